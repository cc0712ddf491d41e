from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("bitrix/events/", include("events.urls")),
    # The console's pages a portal's administrator opens (re-authorisation link, app settings).
    path("bitrix/", include("console.urls")),
    path("bitrix/", include("portals.urls")),
    # The portal administrator's page of API keys (linked from the app page).
    path("bitrix/", include("api.frame_urls")),
    # The outward REST API over the mirror: /api/v1/…, /api/docs.
    path("api/", include("api.urls")),
]
