app_name = "portals"
urlpatterns: list = []
