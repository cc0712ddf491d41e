"""Signals of the portals app, so the layers above it react without being imported here."""

from django.dispatch import Signal

# A verified install committed: the app's one-off setup (binding its events) is due. Sent with
# sender=Portal and portal_id, after the commit. The events app binds and records the outcome
# with portals.services.setup, which the installer page waits for before installFinish.
portal_installed = Signal()
# An install's one-off setup (binding the app's events) finished: kwargs portal_id, state
# ("done" or "failed"). Sent by portals.services.setup; the console shows failed bindings.
portal_setup_recorded = Signal()
# The app page or a placement is rendered for an authenticated frame: kwargs frame, session (see
# portals.services.frames). Receivers return a dict of extra template context (the console adds
# the portal's activity, what needs the user's action, and the settings form).
frame_page_context = Signal()
