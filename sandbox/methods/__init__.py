"""Built-in REST methods; importing this package registers them."""

from sandbox.methods import crm, im, items, system, users

__all__ = ["crm", "im", "items", "system", "users"]
