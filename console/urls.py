"""The console's URLs outside the admin (under /bitrix/)."""

from django.urls import path

from . import views

app_name = "console"
urlpatterns = [
    path("reauth/<str:token>/", views.reauth, name="reauth"),
    path("app/settings/", views.app_settings, name="app_settings"),
]
