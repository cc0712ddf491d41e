from django.apps import AppConfig


class PortalsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "portals"
    verbose_name = "Bitrix24 portals"
    # Subcommands of `manage.py bitrix` this app provides (portals.cli describes the contract).
    bitrix_subcommands = (
        "portals.cli.call",
        "portals.cli.export",
        "portals.cli.importer",
        "portals.cli.doctor",
    )

    def ready(self) -> None:
        # Imported here, not at the top: checks and the app settings' receiver need the app registry.
        from django.test.signals import setting_changed

        from . import checks  # noqa: F401  (registers system checks)
        from .conf import reset_on_setting_changed

        setting_changed.connect(reset_on_setting_changed, dispatch_uid="portals.conf.reset")
