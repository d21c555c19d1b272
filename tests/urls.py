"""One view, for tests that send requests through Django's test client, the admin and the
monitor."""

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.urls import include, path


def hello(request: HttpRequest) -> HttpResponse:
    return HttpResponse("hello")


urlpatterns = [
    path("", hello),
    path("admin/", admin.site.urls),
    path("autotask/", include("autotask.urls")),
]
