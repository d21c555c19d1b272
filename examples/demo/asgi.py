"""ASGI entry point: Django, wrapped so that the server's lifespan starts and stops autotask.

uvicorn demo.asgi:application --app-dir examples --lifespan on
"""

import os

from django.core.asgi import get_asgi_application

from autotask.asgi import with_worker

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo.settings")

application = with_worker(get_asgi_application())
