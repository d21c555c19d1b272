"""``metrics/``: the monitor's Prometheus endpoint (the text is made in ``prometheus``).

A scraper has no session: besides the monitor's own viewers (staff, ``autotask.view_taskrun``)
it may send ``Authorization: Bearer <AUTOTASK_METRICS_TOKEN>``. A request that sends a bearer
token while one is set is judged by the token alone, so a wrong one says 401, not 403.

Importing this module (``autotask.urls`` does) connects the receivers that count this
process's attempts: only a project that mounts the monitor pays for them.
"""

from __future__ import annotations

import hmac

from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_safe

from .. import conf
from . import prometheus
from .access import can_view

prometheus.connect()


@require_safe
def metrics_view(request: HttpRequest) -> HttpResponse:
    """A plain sync view: under ASGI Django runs it in a thread, which ``health()`` needs."""
    token = conf.metrics_token()
    sent = _bearer(request)
    if token is not None and sent is not None:
        if not hmac.compare_digest(sent.encode(), token.encode()):
            denied = _plain("wrong bearer token\n", 401)
            denied["WWW-Authenticate"] = 'Bearer realm="autotask"'
            return denied
    elif not _viewer(request):
        return _plain("metrics need staff status, autotask.view_taskrun or the token\n", 403)
    response = HttpResponse(prometheus.scrape(), content_type=prometheus.CONTENT_TYPE)
    response["Cache-Control"] = "no-store"
    return response


def _bearer(request: HttpRequest) -> str | None:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None


def _viewer(request: HttpRequest) -> bool:
    """A project may serve metrics to a token only, without the auth middleware."""
    user = getattr(request, "user", None)
    return user is not None and can_view(user)


def _plain(text: str, status: int) -> HttpResponse:
    return HttpResponse(text, status=status, content_type="text/plain; charset=utf-8")
