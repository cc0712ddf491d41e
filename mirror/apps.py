from django.apps import AppConfig


class MirrorConfig(AppConfig):
    """A local copy of each portal's CRM data (deals, leads, contacts, companies, users, statuses,
    currencies), kept by an initial sync, the CRM events and a periodic reconciliation."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "mirror"
    verbose_name = "CRM mirror"
    bitrix_subcommands = ("mirror.cli",)  # `manage.py bitrix mirror sync|status|reconcile`
