from django.apps import AppConfig


class EventsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "events"
    verbose_name = "Bitrix24 events"
    bitrix_subcommands = ("events.cli",)  # `manage.py bitrix events …`

    def ready(self) -> None:
        # Handlers must be registered in every process (web and worker) before the first event.
        from events import registry, signals  # noqa: F401

        registry.autodiscover()
