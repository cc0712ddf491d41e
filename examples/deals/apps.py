from django.apps import AppConfig


class DealsExampleConfig(AppConfig):
    """An example feature: follows the portal's deals through their events.

    Only the demo installs it (``DJANGO_EXTRA_APPS=examples.deals``): its handlers register through
    ``event_handlers``, and registering them is what makes the app bind the deal events.
    """

    name = "examples.deals"
    label = "deals_example"
    verbose_name = "Example: deals"
