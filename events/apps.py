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
        # The outbox's depth, read from the database when Prometheus scrapes /metrics.
        from events.models import Event
        from portals.bitrix.metrics import register_gauge

        register_gauge(
            "bitrix24_events_outbox_depth",
            "Events accepted and not yet dispatched (pending, retries included).",
            lambda: Event.objects.pending().count(),
        )
