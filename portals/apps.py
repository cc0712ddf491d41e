from django.apps import AppConfig


class PortalsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "portals"
    verbose_name = "Bitrix24 portals"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers system checks)
