"""URLs an app developer enters in the Bitrix24 developer console (see docs/portals.md)."""

from django.urls import path

from .views import app, install, oauth

app_name = "portals"
urlpatterns = [
    path("install/", install.install, name="install"),
    path("install/status/", install.install_status, name="install_status"),
    path("app/", app.app_page, name="app"),
    path("placement/<slug:name>/", app.placement, name="placement"),
    path("oauth/start/", oauth.oauth_start, name="oauth_start"),
    path("oauth/callback/", oauth.oauth_callback, name="oauth_callback"),
]
