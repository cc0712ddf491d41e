from django.urls import path

from .views import api, api_docs

urlpatterns = [
    path("v1/", api.urls),
    path("docs", api_docs, name="api-docs"),
]
