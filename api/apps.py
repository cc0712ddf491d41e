from django.apps import AppConfig


class ApiConfig(AppConfig):
    """The outward REST API, /api/v1, over the mirror; its keys."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "api"
    verbose_name = "Outward API"
    bitrix_subcommands = ("api.cli",)  # `manage.py bitrix apikey create|list|rotate|revoke`

    def ready(self) -> None:
        # Receivers: an uninstalled portal's keys are revoked; a saved key leaves every process's
        # key cache in this process at once.
        from . import signals  # noqa: F401
