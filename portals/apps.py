from django.apps import AppConfig


class PortalsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "portals"
    verbose_name = "Bitrix24 portals"
    # Subcommands of `manage.py bitrix` this app provides (portals.cli describes the contract).
    bitrix_subcommands = ("portals.cli.call", "portals.cli.export", "portals.cli.importer")

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers system checks)
