"""Signals the portals app sends, so the layers above it can react without being imported here."""

from django.dispatch import Signal

# A portal's stored credentials changed outside Model.save() (a queryset update): whatever keeps
# a copy of them (the event receiver's token cache) drops it. Sent with sender=Portal, instance.
portal_changed = Signal()
