"""REST 3.0 on every portal: ``/rest/api/<method>`` (OAuth, ``auth`` in the JSON body) and
``/rest/api/<user>/<secret>/<method>`` (webhooks). Protocol §11; behaviour in docs/sandbox.md.

Kept apart from the old REST (sandbox.rest, sandbox.registry): a 3.0 method is registered here
only, so the old address answers 404 for it, and the old methods (CRM) answer 404 here. The two
share the portal's leaky bucket, operating-time meters, concurrency slots, faults and counters.
"""
