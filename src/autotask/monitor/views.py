"""The monitor's pages, streams and actions.

Pages are plain sync views rendered by Django's templates, so they work under any server. Live
updates come as server-sent events from async views under ASGI; under WSGI, where an open
stream would hold a worker thread for as long as the page is open, the page polls the same
snapshot as JSON instead (``live`` in the template says which). Actions are POSTs with CSRF
protection, for users allowed to change runs, and each is logged on the ``autotask.monitor``
logger with who did it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.handlers.asgi import ASGIRequest
from django.db.models import QuerySet
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    JsonResponse,
    StreamingHttpResponse,
)
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.http import require_POST

from .. import store
from ..exceptions import RunDoesNotExist, ScheduleDoesNotExist
from ..handles import AsyncTaskHandle, TaskHandle
from ..models import TaskRun
from ..status import CANCELLED, DONE, ERROR, Status, TaskError
from ..tasks import enqueue
from . import snapshot as snapshots
from .access import can_act, viewer_required

logger = logging.getLogger("autotask.monitor")

PAGE_SIZE = 50
# A bulk retry touches at most this many runs at once; the message says when more matched.
BULK_LIMIT = 10_000
# Seconds between snapshots a stream compares, and between comments that keep it open.
_STREAM_EVERY = 0.25
_KEEPALIVE_EVERY = 15.0
_WINDOWS = {"15m": 15, "1h": 60, "6h": 360, "24h": 1440, "7d": 10080}
_FINAL = frozenset({DONE, ERROR, CANCELLED})
_shared = snapshots.SharedSnapshot()


def _live(request: HttpRequest) -> str:
    return "sse" if isinstance(request, ASGIRequest) else "poll"


def _nav(request: HttpRequest, page: str, **context: Any) -> dict[str, Any]:
    return {"page": page, "live": _live(request), "can_act": can_act(request.user), **context}


# --- overview ------------------------------------------------------------------------------


@viewer_required
def overview(request: HttpRequest) -> HttpResponse:
    data = snapshots.snapshot()
    return render(
        request,
        "autotask/monitor/overview.html",
        _nav(request, "overview", snapshot=data),
    )


@viewer_required
def overview_json(request: HttpRequest) -> JsonResponse:
    return JsonResponse(snapshots.snapshot())


@viewer_required
async def overview_events(request: HttpRequest) -> StreamingHttpResponse:
    return _event_stream(_overview_events())


async def _overview_events() -> AsyncIterator[str]:
    last = None
    quiet = 0.0
    while True:
        data = json.dumps(await _shared.get(), separators=(",", ":"))
        if data != last:
            last, quiet = data, 0.0
            yield f"event: overview\ndata: {data}\n\n"
        elif quiet >= _KEEPALIVE_EVERY:
            quiet = 0.0
            yield ": still here\n\n"
        pause = max(_STREAM_EVERY, 2 * _shared.took)
        await asyncio.sleep(pause)
        quiet += pause


def _event_stream(events: AsyncIterator[str]) -> StreamingHttpResponse:
    response = StreamingHttpResponse(events, content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # nginx would hold the events back otherwise
    return response


# --- runs ----------------------------------------------------------------------------------


def _filtered(params: Any) -> tuple[QuerySet[TaskRun], dict[str, str]]:
    """Runs matching the list's filters (status, queue, task name, enqueued between), newest
    first, and the filters as given, for the form and the links."""
    chosen = {
        key: params.get(key, "").strip() for key in ("status", "queue", "name", "since", "until")
    }
    runs = TaskRun.objects.all()
    if chosen["status"]:
        try:
            runs = runs.filter(status=Status(chosen["status"]).value)
        except ValueError:
            chosen["status"] = ""
    if chosen["queue"]:
        runs = runs.filter(queue=chosen["queue"])
    if chosen["name"]:
        runs = runs.filter(name=chosen["name"])
    for key, lookup in (("since", "enqueued_at__gte"), ("until", "enqueued_at__lte")):
        moment = _moment(chosen[key])
        if moment is None:
            chosen[key] = ""
        else:
            runs = runs.filter(**{lookup: moment})
    return runs.order_by("-id"), chosen


def _moment(text: str) -> datetime | None:
    if not text:
        return None
    moment = parse_datetime(text)
    if moment is None:
        return None
    if timezone.is_naive(moment):
        moment = timezone.make_aware(moment)
    return moment


@viewer_required
def runs(request: HttpRequest) -> HttpResponse:
    """Keyset pagination on the id (``?before=``): each page is an index range scan of the
    admin's (status, id), (queue, id) or (name, id) index, as fast on page 1,000 as on page 1
    over a million rows; OFFSET would read every row before the page."""
    listed, chosen = _filtered(request.GET)
    before = request.GET.get("before", "")
    if before.isdigit():
        listed = listed.filter(id__lt=int(before))
    page = list(
        listed.only(
            "id", "name", "queue", "status", "attempts", "max_attempts", "enqueued_at",
            "started_at", "finished_at",
        )[: PAGE_SIZE + 1]
    )  # fmt: skip
    more = len(page) > PAGE_SIZE
    page = page[:PAGE_SIZE]
    query = {key: value for key, value in chosen.items() if value}
    context = _nav(
        request,
        "runs",
        runs=page,
        chosen=chosen,
        statuses=[status.value for status in Status],
        next_before=page[-1].id if more else None,
        query=query,
        filtered=bool(query),
    )
    return render(request, "autotask/monitor/runs.html", context)


def _run_or_404(run_id: int) -> TaskRun:
    try:
        return TaskRun.objects.get(pk=run_id)
    except TaskRun.DoesNotExist:
        raise Http404(f"no run #{run_id}") from None


def _attempts(run: TaskRun) -> list[dict[str, Any]]:
    """One entry per attempt: its worker and, for a failed one, its error."""
    errors = [error for error in map(TaskError.from_json, run.errors or []) if error]
    workers = list(run.worker_ids or [])
    count = max(run.attempts, len(errors))
    return [
        {
            "number": number,
            "worker": workers[number - 1] if number <= len(workers) else None,
            "error": errors[number - 1] if number <= len(errors) else None,
        }
        for number in range(1, count + 1)
    ]


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return max((end - start).total_seconds(), 0.0)


def _run_state(run: TaskRun) -> dict[str, Any]:
    return {
        "id": run.id,
        "status": run.status,
        "attempts": run.attempts,
        "final": run.status in _FINAL,
    }


@viewer_required
def run(request: HttpRequest, run_id: int) -> HttpResponse:
    found = _run_or_404(run_id)
    if request.GET.get("format") == "json":
        return JsonResponse(_run_state(found))
    context = _nav(
        request,
        "runs",
        run=found,
        args_json=json.dumps(found.args, indent=2),
        kwargs_json=json.dumps(found.kwargs, indent=2),
        result_json=json.dumps(found.result, indent=2) if found.status == DONE else None,
        error=TaskError.from_json(found.error) if found.error else None,
        attempts=_attempts(found),
        wait_seconds=_seconds(found.run_at, found.started_at),
        run_seconds=_seconds(found.started_at, found.finished_at),
        final=found.status in _FINAL,
    )
    return render(request, "autotask/monitor/run.html", context)


@viewer_required
async def run_events(request: HttpRequest, run_id: int) -> StreamingHttpResponse:
    try:
        handle = await AsyncTaskHandle.get(run_id)
    except RunDoesNotExist:
        raise Http404(f"no run #{run_id}") from None
    return _event_stream(_run_events(handle))


async def _run_events(handle: AsyncTaskHandle) -> AsyncIterator[str]:
    async for status in handle.updates():
        state = {
            "id": handle.id,
            "status": str(status),
            "attempts": handle.attempts,
            "final": status in _FINAL,
        }
        yield f"event: run\ndata: {json.dumps(state)}\n\n"


# --- actions -------------------------------------------------------------------------------


def _acting(request: HttpRequest) -> None:
    if not can_act(request.user):
        raise PermissionDenied("acting from the monitor needs autotask.change_taskrun")


def _back(request: HttpRequest, fallback: str) -> HttpResponseBase:
    target = request.POST.get("next", "")
    if not target.startswith(reverse("autotask:overview")):
        target = fallback
    return redirect(target)


def _tell(request: HttpRequest, text: str, *, ok: bool = True) -> None:
    level = messages.SUCCESS if ok else messages.WARNING
    messages.add_message(request, level, text, fail_silently=True)


@csrf_protect
@require_POST
@viewer_required
def retry(request: HttpRequest, run_id: int) -> HttpResponseBase:
    _acting(request)
    retried = store.retry_runs([run_id])
    logger.info("autotask monitor: %s retried run #%d: %s", request.user, run_id, bool(retried))
    if retried:
        _tell(request, f"Run #{run_id} is waiting again.")
    else:
        _tell(
            request, f"Run #{run_id} was not retried: only a failed or cancelled run is.", ok=False
        )
    return _back(request, reverse("autotask:run", args=[run_id]))


@csrf_protect
@require_POST
@viewer_required
def cancel(request: HttpRequest, run_id: int) -> HttpResponseBase:
    _acting(request)
    try:
        handle = TaskHandle.get(run_id)
    except RunDoesNotExist:
        raise Http404(f"no run #{run_id}") from None
    acted = handle.cancel()
    logger.info("autotask monitor: %s cancelled run #%d: %s", request.user, run_id, acted)
    if not acted:
        _tell(request, f"Run #{run_id} had already finished.", ok=False)
    elif handle.status == CANCELLED:
        _tell(request, f"Run #{run_id} is cancelled.")
    else:
        _tell(request, f"Run #{run_id} is running: its runtime was asked to stop it.")
    return _back(request, reverse("autotask:run", args=[run_id]))


@csrf_protect
@require_POST
@viewer_required
def retry_filtered(request: HttpRequest) -> HttpResponseBase:
    """Retry every failed run the list's filters match (at most ``BULK_LIMIT``)."""
    _acting(request)
    listed, chosen = _filtered(request.POST)
    ids = list(listed.filter(status=ERROR).values_list("id", flat=True)[: BULK_LIMIT + 1])
    more = len(ids) > BULK_LIMIT
    retried = store.retry_runs(ids[:BULK_LIMIT])
    logger.info(
        "autotask monitor: %s retried %d failed run(s) matching %s",
        request.user,
        len(retried),
        {key: value for key, value in chosen.items() if value},
    )
    text = f"{len(retried)} failed run(s) waiting again."
    if more:
        text += f" More matched: {BULK_LIMIT:,} are retried at a time; retry again for the rest."
    _tell(request, text)
    return _back(request, reverse("autotask:runs"))


# --- tasks ---------------------------------------------------------------------------------


@viewer_required
def tasks(request: HttpRequest) -> HttpResponse:
    window = request.GET.get("window", "1h")
    if window not in _WINDOWS:
        window = "1h"
    since = timezone.now() - timedelta(minutes=_WINDOWS[window])
    timings = store.task_timings(since)
    order = request.GET.get("order", "p95")
    if order == "failures":
        timings.sort(key=lambda t: t.failed / t.count if t.count else 0.0, reverse=True)
    elif order == "name":
        timings.sort(key=lambda t: (t.name, t.queue))
    else:
        order = "p95"
        timings.sort(key=lambda t: t.run_seconds[1], reverse=True)
    rows = [
        {"timings": t, "failure_percent": 100.0 * t.failed / t.count if t.count else 0.0}
        for t in timings
    ]
    context = _nav(request, "tasks", rows=rows, window=window, windows=list(_WINDOWS), order=order)
    return render(request, "autotask/monitor/tasks.html", context)


# --- schedules -----------------------------------------------------------------------------


@viewer_required
def schedules(request: HttpRequest) -> HttpResponse:
    rows = []
    for schedule in store.schedules():
        last = (
            TaskRun.objects.filter(name=schedule.name)
            .exclude(status__in=["waiting", "running"])
            .order_by("-id")
            .only("id", "status", "finished_at")
            .first()
        )
        rows.append(
            {
                "schedule": schedule,
                "words": snapshots.spec_in_words(schedule.spec),
                "last": last,
            }
        )
    return render(request, "autotask/monitor/schedules.html", _nav(request, "schedules", rows=rows))


@csrf_protect
@require_POST
@viewer_required
def schedule_action(request: HttpRequest, name: str, action: str) -> HttpResponseBase:
    _acting(request)
    fallback = reverse("autotask:schedules")
    try:
        if action == "pause":
            store.pause_schedule(name)
            text = f"Schedule {name} is paused."
        elif action == "resume":
            store.resume_schedule(name)
            text = f"Schedule {name} is resumed."
        elif action == "run":
            if name not in {schedule.name for schedule in store.schedules()}:
                raise ScheduleDoesNotExist(name)
            handle = enqueue(name)
            text = f"Schedule {name} runs now: run #{handle.id}."
        else:
            raise Http404(f"no action {action!r}")
    except ScheduleDoesNotExist:
        raise Http404(f"no schedule {name!r}") from None
    except LookupError as exc:  # the task is not in this process's code
        _tell(request, f"Schedule {name} could not run here: {exc}", ok=False)
        return _back(request, fallback)
    logger.info("autotask monitor: %s: %s schedule %s", request.user, action, name)
    _tell(request, text)
    return _back(request, fallback)
