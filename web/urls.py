"""The site's URLs: the admin, login, the REST API under /api/v1/ and the pages."""
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from web.views.common import favicon

urlpatterns = [
    path("admin/", admin.site.urls),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("favicon.ico", favicon, name="favicon"),
    path("api/v1/", include("web.api.urls")),
    path("", include("web.page_urls")),
]
