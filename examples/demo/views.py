"""The demo's endpoints: async enqueue + live status stream, sync enqueue in a transaction, lookup.

Async views use ``await task.defer(...)`` and ``AsyncTaskHandle``; sync views call the task
(``task(...)``), which writes through Django's own connection and so joins the transaction.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    JsonResponse,
    StreamingHttpResponse,
)
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from autotask import AsyncTaskHandle
from shop.tasks import fetch_price, send_receipt, slow

INDEX = """<!doctype html>
<title>autotask demo</title>
<h1>autotask demo</h1>
<p>Tasks run inside this very server process; their runs are rows in PostgreSQL.</p>
<ul>
  <li><code>GET /price/&lt;sku&gt;/</code>: defers <code>fetch_price</code> and streams its
      statuses as server-sent events (try <code>curl -N</code>).</li>
  <li><code>POST /orders/</code> with <code>order_id</code>: enqueues <code>send_receipt</code>
      inside <code>transaction.atomic()</code>; answers <code>{"id": ...}</code>.</li>
  <li><code>GET /runs/&lt;id&gt;/</code>: a run's status, result and error as JSON.</li>
  <li><code>POST /slow/?seconds=N</code>: defers <code>slow</code>, which sleeps N seconds.</li>
</ul>
"""


def _describe(handle: AsyncTaskHandle) -> dict[str, Any]:
    """What a client may want to know about a run, JSON-ready."""
    data: dict[str, Any] = {
        "id": handle.id,
        "task": handle.name,
        "status": str(handle.status),
        "attempts": handle.attempts,
        "enqueued_at": handle.enqueued_at,
        "started_at": handle.started_at,
        "finished_at": handle.finished_at,
    }
    if handle.ready:
        data["result"] = handle.result
        data["error"] = None if handle.error is None else handle.error.message
    return data


def _number(request: HttpRequest, name: str, kind: type[int] | type[float]) -> Any:
    """A number from the form body, else the query string; None if absent or not a number."""
    raw = request.POST.get(name) or request.GET.get(name)
    if raw is None and request.content_type == "application/json":
        try:
            raw = json.loads(request.body or b"{}").get(name)
        except (ValueError, AttributeError):
            return None
    try:
        return None if raw is None else kind(raw)
    except (TypeError, ValueError):
        return None


@require_GET
def index(request: HttpRequest) -> HttpResponse:
    return HttpResponse(INDEX)


@require_GET
async def price(request: HttpRequest, sku: str) -> StreamingHttpResponse:
    """Defer a price lookup and stream its statuses (server-sent events) until it is finished."""
    handle = await fetch_price.defer(sku)

    async def events() -> AsyncIterator[str]:
        try:
            async for status in handle.updates(timeout=30):
                # A final status comes with the row re-read (result, error); for an intermediate
                # one only the status itself is news.
                if handle.ready:
                    yield _event(_describe(handle))
                else:
                    yield _event({"id": handle.id, "task": handle.name, "status": str(status)})
        except TimeoutError:
            yield _event({"id": handle.id, "status": str(handle.status), "timeout": True})

    response = StreamingHttpResponse(events(), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # tell nginx not to buffer the stream
    return response


def _event(data: dict[str, Any]) -> str:
    return f"data: {json.dumps(data, cls=DjangoJSONEncoder)}\n\n"


@csrf_exempt
@require_POST
def orders(request: HttpRequest) -> HttpResponse:
    """Sync view: the run is enqueued in the same transaction as the (imaginary) order."""
    order_id = _number(request, "order_id", int)
    if order_id is None:
        return HttpResponseBadRequest("order_id (an integer) is required\n")
    with transaction.atomic():
        # ... create the order here; if this block raises, the receipt is never sent.
        handle = send_receipt(order_id)
    return JsonResponse({"id": handle.id, "status": str(handle.status)}, status=202)


@require_GET
async def run_detail(request: HttpRequest, run_id: int) -> JsonResponse:
    try:
        handle = await AsyncTaskHandle.get(run_id)
    except LookupError as exc:
        return JsonResponse({"error": str(exc)}, status=404)
    return JsonResponse(_describe(handle))


@csrf_exempt
@require_POST
async def slow_run(request: HttpRequest) -> HttpResponse:
    seconds = _number(request, "seconds", float)
    if seconds is None or not 0 <= seconds <= 3600:
        return HttpResponseBadRequest("seconds (0 to 3600) is required\n")
    handle = await slow.defer(seconds)
    return JsonResponse({"id": handle.id, "status": str(handle.status)}, status=202)
