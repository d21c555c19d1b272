"""One view, for tests that send requests through Django's test client, and the admin."""

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.urls import path


def hello(request: HttpRequest) -> HttpResponse:
    return HttpResponse("hello")


urlpatterns = [path("", hello), path("admin/", admin.site.urls)]
