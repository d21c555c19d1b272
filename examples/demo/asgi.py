"""ASGI entry point: Django, wrapped so that the server's lifespan starts and stops autotask.

uvicorn demo.asgi:application --app-dir examples --lifespan on
"""

import os

from django.conf import settings
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.core.asgi import get_asgi_application

from autotask.asgi import with_worker

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo.settings")

django_application = get_asgi_application()
# The monitor's CSS and JS, served by Django itself while DEBUG (whitenoise or the web server
# in production, after collectstatic).
if settings.DEBUG:
    django_application = ASGIStaticFilesHandler(django_application)
application = with_worker(django_application)
