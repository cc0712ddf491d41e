"""Signals of the portals app, so the layers above it react without being imported here."""

from django.dispatch import Signal

# A verified install committed: the app's one-off setup (binding its events) is due. Sent with
# sender=Portal and portal_id, after the commit. The events app binds and records the outcome
# with portals.services.setup, which the installer page waits for before installFinish.
portal_installed = Signal()
