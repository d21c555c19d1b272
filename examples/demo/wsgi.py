"""WSGI entry point, for gunicorn, uwsgi or ``manage.py runserver``.

gunicorn demo.wsgi:application --chdir examples --workers 2

With ``AUTOTASK_IS_ACTIVE = True`` each server process starts autotask's runtime at its first
request and stops it at exit; nothing here needs to change for that.
"""

import os

from django.conf import settings
from django.contrib.staticfiles.handlers import StaticFilesHandler
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo.settings")

application = get_wsgi_application()
# The monitor's CSS and JS under gunicorn too while DEBUG (runserver serves them itself);
# whitenoise or the web server in production, after collectstatic.
if settings.DEBUG:
    application = StaticFilesHandler(application)
