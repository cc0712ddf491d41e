"""Under /bitrix/: the portal administrator's page of API keys, opened from the app page's frame."""

from django.urls import path

from .portal_keys import portal_keys

urlpatterns = [path("app/keys/", portal_keys, name="api-portal-keys")]
