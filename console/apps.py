from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps
from django.utils.translation import gettext_lazy as _


class ConsoleAdminConfig(admin_apps.AdminConfig):
    """Django's admin, with the console's site: the dashboard is its index page.

    INSTALLED_APPS names it in place of django.contrib.admin.
    """

    default = False
    default_site = "console.sites.ConsoleAdminSite"


class ConsoleConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "console"
    verbose_name = _("Operator console")

    def ready(self) -> None:
        # Every figure recorded in this process (web or worker) feeds the per-portal rollups.
        from console import receivers  # noqa: F401
        from console.rollups import rollups
        from portals.bitrix.metrics import observe

        observe(rollups.observe)
