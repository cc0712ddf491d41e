"""Built-in REST methods; importing this package registers them."""

from sandbox.methods import crm, system, users

__all__ = ["crm", "system", "users"]
