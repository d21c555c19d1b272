"""The admin: runs, schedules and workers, read through the ORM and changed only through ``store``.

Three decisions shape it:

- **Nothing is edited, added or deleted from a form.** A run's row belongs to the runtime while it
  runs; a form's save would write back every column as the form read it, undoing whatever the
  runtime wrote meanwhile. The actions go through ``store``, whose statements each name the state
  they leave, so a run that moved on in between is left alone and reported as such.
- **No count of the whole table.** ``count(*)`` over millions of runs takes seconds; the paginator
  counts exactly only up to a page's worth of pages and then takes the planner's estimate.
- **Every filter and ordering has an index** (migration 0005), and the list is ordered by id only:
  any other column would sort every matching row to show the first hundred.
"""

from __future__ import annotations

import json
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from django.contrib import admin, messages
from django.contrib.admin.views.main import ChangeList
from django.core.paginator import Paginator
from django.db.models import (
    CharField,
    Count,
    DurationField,
    ExpressionWrapper,
    F,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Value,
)
from django.db.models.functions import Cast, Coalesce, Concat, Now
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import localize
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.timesince import timeuntil

from . import conf, registry, store
from .exceptions import ScheduleDoesNotExist
from .models import LimitSlot, Queue, Schedule, TaskRun, Worker
from .status import RUNNING, TaskError

# Counted exactly up to here (a LIMITed count reads at most this many index entries); beyond,
# the page count only has to be about right.
EXACT_COUNT_LIMIT = 10_000
# A loose index scan costs one probe per distinct value; past this many, filters stop listing.
DISTINCT_LIMIT = 200
# The columns that can be megabytes each: the changelist never shows them, so never reads them.
_LARGE_COLUMNS = ("args", "kwargs", "result", "error", "errors", "worker_ids")
_PRE = '<pre style="white-space: pre-wrap; margin: 0">{}</pre>'

if TYPE_CHECKING:  # ModelAdmin is generic only in django-stubs, not at runtime
    _RunAdmin = admin.ModelAdmin[TaskRun]
    _ScheduleAdmin = admin.ModelAdmin[Schedule]
    _WorkerAdmin = admin.ModelAdmin[Worker]
    _QueueAdmin = admin.ModelAdmin[Queue]
    _LimitSlotAdmin = admin.ModelAdmin[LimitSlot]
    _Paginator = Paginator[Any]
else:
    _RunAdmin = _ScheduleAdmin = _WorkerAdmin = _QueueAdmin = _LimitSlotAdmin = admin.ModelAdmin
    _Paginator = Paginator


class EstimatingPaginator(_Paginator):
    """A paginator whose count never reads more than ``EXACT_COUNT_LIMIT`` rows."""

    @cached_property
    def count(self) -> int:
        runs: QuerySet[Any] = self.object_list  # type: ignore[assignment]
        exact = runs.order_by().values("pk")[: EXACT_COUNT_LIMIT + 1].count()
        if exact <= EXACT_COUNT_LIMIT:
            return exact
        estimate = _planned_rows(runs) if runs.query.has_filters() else store.estimated_run_count()
        return max(estimate, exact)


def _planned_rows(runs: QuerySet[Any]) -> int:
    """How many rows the planner expects a filtered list to have (its statistics, no scan)."""
    plan = runs.order_by().explain(format="json")
    found = json.loads(plan) if isinstance(plan, str) else plan
    return int(found[0]["Plan"]["Plan Rows"])


def _distinct_values(column: str) -> tuple[list[str], bool]:
    """A column's distinct values through its index, one probe each (``SELECT DISTINCT`` would
    read every row), and whether that is all of them (``DISTINCT_LIMIT``)."""
    runs = TaskRun.objects.order_by(column).values_list(column, flat=True)
    values: list[str] = []
    value = runs.first()
    while value is not None:
        if len(values) == DISTINCT_LIMIT:
            return values, False
        values.append(value)
        value = runs.filter(**{f"{column}__gt": value}).first()
    return values, True


class _ColumnFilter(admin.SimpleListFilter):
    """The runs with one value of an indexed column, offering the values that occur."""

    def lookups(
        self, request: HttpRequest, model_admin: admin.ModelAdmin[Any]
    ) -> list[tuple[str, str]]:
        values, _ = _distinct_values(str(self.parameter_name))
        chosen = self.value()
        if chosen is not None and chosen not in values:
            values.append(chosen)
        return [(value, value) for value in values]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        chosen = self.value()
        if chosen is None:
            return queryset
        return queryset.filter(**{str(self.parameter_name): chosen})


class _NameFilter(_ColumnFilter):
    title = "task"
    parameter_name = "name"


class _QueueFilter(_ColumnFilter):
    title = "queue"
    parameter_name = "queue"


class _RunChangeList(ChangeList):
    def get_queryset(self, request: HttpRequest, exclude_parameters: Any = None) -> QuerySet[Any]:
        return super().get_queryset(request, exclude_parameters).defer(*_LARGE_COLUMNS)


def _span(delta: timedelta) -> str:
    seconds = max(delta.total_seconds(), 0.0)
    if seconds < 60:
        return f"{seconds:.3f} s" if seconds < 10 else f"{seconds:.1f} s"
    minutes, rest = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min {rest} s"


def _json(value: Any) -> SafeString:
    return format_html(_PRE, json.dumps(value, indent=2, ensure_ascii=False))


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _report(
    model_admin: admin.ModelAdmin[Any], request: HttpRequest, done: str, skipped: int, why: str
) -> None:
    """One message per action: what changed, and what was left alone because of its state."""
    if skipped:
        message = f"{done}; {skipped} left alone: {why}."
        model_admin.message_user(request, message, messages.WARNING)
    else:
        model_admin.message_user(request, f"{done}.", messages.SUCCESS)


def _ttl(name: str) -> float:
    """How long a cancelled run is kept: its task's ttl, or the default for a task this process
    does not know."""
    task = registry.get(name)
    return float(task.ttl) if task is not None else conf.DEFAULT_TTL


def _ids(queryset: QuerySet[Any]) -> list[int]:
    return list(queryset.values_list("pk", flat=True))


@admin.register(TaskRun)
class TaskRunAdmin(_RunAdmin):
    list_display = (
        "id",
        "name",
        "queue",
        "status",
        "priority",
        "run_at",
        "attempts_of",
        "duration",
        "worker",
    )
    list_filter = ("status", _QueueFilter, _NameFilter)
    search_fields = ("name",)  # searched by get_search_results, through the name index
    search_help_text = "A run's id, or part of its task's name."
    ordering = ("-id",)
    sortable_by = ("id",)
    paginator = EstimatingPaginator
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER  # a facet is a count over every matching row
    actions = ("retry", "cancel", "run_now", "pause_queues")
    fieldsets = (
        (None, {"fields": ("id", "name", "queue", "status", "priority")}),
        ("Call", {"fields": ("arguments", "keyword_arguments", "return_value")}),
        (
            "Attempts",
            {"fields": ("attempts_of", "postpones", "worker", "worker_ids", "failures")},
        ),
        (
            "Times",
            {"fields": ("run_at", "enqueued_at", "started_at", "finished_at", "duration")},
        ),
        (
            "Keys",
            {
                "fields": (
                    "unique_key",
                    "schedule_key",
                    "concurrency_key",
                    "rate_key",
                    "expires_at",
                )
            },
        ),
        ("Workflow", {"fields": ("workflow", "waiting_for", "waits_for", "needed_by")}),
    )
    readonly_fields = (
        "workflow",
        "waits_for",
        "needed_by",
        "arguments",
        "keyword_arguments",
        "return_value",
        "attempts_of",
        "worker",
        "failures",
        "duration",
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[TaskRun]:
        label = Concat("host", Value(":"), Cast("pid", CharField()))
        worker = Worker.objects.filter(id=OuterRef("worker_id")).values_list(label)
        return super().get_queryset(request).annotate(worker_label=Subquery(worker))

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return _RunChangeList

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[TaskRun], search_term: str
    ) -> tuple[QuerySet[TaskRun], bool]:
        """Match names among the distinct ones (found through the index), then filter on those:
        ``name ILIKE '%term%'`` over every row would read them all."""
        term = search_term.strip()
        if not term:
            return queryset, False
        names, complete = _distinct_values("name")
        found = Q(name__in=[name for name in names if term.lower() in name.lower()])
        if not complete:
            found = Q(name__icontains=term)
        if term.isdigit():
            found |= Q(pk=int(term))
        return queryset.filter(found), False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: TaskRun | None = None) -> bool:
        """The actions' permission; a run itself is never saved from a form (see the module)."""
        return obj is None and super().has_change_permission(request)

    def has_delete_permission(self, request: HttpRequest, obj: TaskRun | None = None) -> bool:
        return False  # the leader prunes finished runs after their ttl

    @admin.display(description="attempts")
    def attempts_of(self, run: TaskRun) -> str:
        return f"{run.attempts}/{run.max_attempts}"

    @admin.display(description="duration")
    def duration(self, run: TaskRun) -> str:
        if run.started_at is None:
            return "-"
        if run.finished_at is not None:
            return _span(run.finished_at - run.started_at)
        if run.status == RUNNING:
            return f"{_span(timezone.now() - run.started_at)} so far"
        return "-"

    @admin.display(description="worker")
    def worker(self, run: TaskRun) -> str:
        label: str | None = getattr(run, "worker_label", None)
        if label:
            return label
        return "-" if run.worker_id is None else f"{str(run.worker_id)[:8]} (gone)"

    @admin.display(description="args")
    @admin.display(description="workflow")
    def workflow(self, run: TaskRun) -> str:
        """A link to the list of the workflow's steps (the changelist filtered by its id)."""
        if run.workflow_id is None:
            return "-"
        url = reverse(f"{self.admin_site.name}:autotask_taskrun_changelist")
        return format_html('<a href="{0}?workflow_id={1}">workflow {1}</a>', url, run.workflow_id)

    @admin.display(description="runs after")
    def waits_for(self, run: TaskRun) -> str:
        """The runs it depends on (it is due once they have all finished)."""
        dependencies = run.dependencies.order_by("position")
        return self._run_links(dependencies.values_list("depends_on_id", flat=True))

    @admin.display(description="needed by")
    def needed_by(self, run: TaskRun) -> str:
        """The runs that depend on it."""
        return self._run_links(run.dependents.order_by("run_id").values_list("run_id", flat=True))

    def _run_links(self, run_ids: Any) -> str:
        ids = list(run_ids[:51])
        if not ids:
            return "-"
        change = f"{self.admin_site.name}:autotask_taskrun_change"
        links = [
            format_html('<a href="{}">#{}</a>', reverse(change, args=[run_id]), run_id)
            for run_id in ids[:50]
        ]
        more = ", ..." if len(ids) > 50 else ""
        return format_html("{}{}", format_html_join(", ", "{}", ((link,) for link in links)), more)

    def arguments(self, run: TaskRun) -> SafeString:
        return _json(run.args)

    @admin.display(description="kwargs")
    def keyword_arguments(self, run: TaskRun) -> SafeString | str:
        return _json(run.kwargs)

    @admin.display(description="result")
    def return_value(self, run: TaskRun) -> SafeString | str:
        return _json(run.result) if run.status == "done" else "-"

    @admin.display(description="errors")
    def failures(self, run: TaskRun) -> SafeString | str:
        """Each failed attempt's error with its traceback, oldest first."""
        errors = [e for e in map(TaskError.from_json, run.errors or [run.error]) if e]
        if not errors:
            return "-"
        return format_html_join(
            "",
            "<p><strong>Failed attempt {}: {}: {}</strong></p>" + _PRE,
            ((n, e.exception_class_path, e.message, e.traceback) for n, e in enumerate(errors, 1)),
        )

    @admin.action(description="Retry the selected failed or cancelled runs", permissions=["change"])
    def retry(self, request: HttpRequest, queryset: QuerySet[TaskRun]) -> None:
        ids = _ids(queryset)
        retried = store.retry_runs(ids)
        done = f"{_plural(len(retried), 'run')} waiting again"
        _report(self, request, done, len(ids) - len(retried), "not failed or cancelled")

    @admin.action(description="Cancel the selected runs", permissions=["change"])
    def cancel(self, request: HttpRequest, queryset: QuerySet[TaskRun]) -> None:
        cancelled = stopping = skipped = 0
        for run_id, name in queryset.values_list("pk", "name"):
            record, acted = store.cancel_run(run_id, _ttl(name))
            if record is not None:
                cancelled += 1
            elif acted:
                stopping += 1
            else:
                skipped += 1
        done = f"{_plural(cancelled, 'waiting run')} cancelled"
        if stopping:
            done += f", {_plural(stopping, 'running run')} asked to stop (by its runtime)"
        _report(self, request, done, skipped, "already finished")

    @admin.action(description="Run the selected waiting runs now", permissions=["change"])
    def run_now(self, request: HttpRequest, queryset: QuerySet[TaskRun]) -> None:
        ids = _ids(queryset)
        due = store.run_now(ids)
        done = f"{_plural(len(due), 'run')} due now"
        _report(self, request, done, len(ids) - len(due), "not waiting for a later time")

    @admin.action(description="Pause the queues of the selected runs", permissions=["change"])
    def pause_queues(self, request: HttpRequest, queryset: QuerySet[TaskRun]) -> None:
        names = sorted(set(queryset.values_list("queue", flat=True)))
        for name in names:
            store.pause_queue(name)
        self.message_user(
            request,
            f"{_plural(len(names), 'queue')} paused ({', '.join(names)}): no process claims "
            "their runs until they are resumed (under Queues).",
            messages.SUCCESS,
        )


@admin.register(Queue)
class QueueAdmin(_QueueAdmin):
    """Queues paused (or resumed) by hand; a queue with no row has never been paused."""

    list_display = ("name", "paused", "changed_at")
    list_filter = ("paused",)
    ordering = ("name",)
    actions = ("pause", "resume")
    readonly_fields = ("name", "paused", "changed_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # pause a queue from the runs list, the command or pause_queue()

    def has_change_permission(self, request: HttpRequest, obj: Queue | None = None) -> bool:
        return obj is None and super().has_change_permission(request)

    @admin.action(description="Pause the selected queues", permissions=["change"])
    def pause(self, request: HttpRequest, queryset: QuerySet[Queue]) -> None:
        self._set_paused(request, queryset, paused=True)

    @admin.action(description="Resume the selected queues", permissions=["change"])
    def resume(self, request: HttpRequest, queryset: QuerySet[Queue]) -> None:
        self._set_paused(request, queryset, paused=False)

    def _set_paused(self, request: HttpRequest, queryset: QuerySet[Queue], *, paused: bool) -> None:
        names = list(queryset.filter(paused=not paused).values_list("name", flat=True))
        for name in names:
            (store.pause_queue if paused else store.resume_queue)(name)
        why = "already paused" if paused else "not paused"
        word = "paused" if paused else "resumed"
        changed = f"{_plural(len(names), 'queue')} {word}"
        _report(self, request, changed, queryset.count() - len(names), why)


@admin.register(LimitSlot)
class LimitSlotAdmin(_LimitSlotAdmin):
    """The slots and tokens of limited keys, read only: the claim and a trigger own them."""

    list_display = ("key", "kind", "slot", "holder", "taken_at", "period")
    list_filter = ("kind",)
    search_fields = ("key",)
    ordering = ("kind", "key", "slot")
    readonly_fields = ("holder",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: LimitSlot | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: LimitSlot | None = None) -> bool:
        return False

    @admin.display(description="held by")
    def holder(self, slot: LimitSlot) -> str:
        """The run holding a concurrency slot (a rate token's last taker is history)."""
        if slot.run_id is None or slot.kind != LimitSlot.Kind.CONCURRENCY:
            return "-"
        url = reverse(f"{self.admin_site.name}:autotask_taskrun_change", args=[slot.run_id])
        return format_html('<a href="{}">run {}</a>', url, slot.run_id)


@admin.register(Schedule)
class ScheduleAdmin(_ScheduleAdmin):
    list_display = ("name", "spec", "next_run", "last_run_at", "paused", "orphaned")
    list_filter = ("paused", "orphaned")
    search_fields = ("name",)
    ordering = ("name",)
    actions = ("pause", "resume")
    readonly_fields = ("next_run",)
    fields = ("name", "spec", "next_run", "last_run_at", "paused", "orphaned")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # a runtime records the schedules its code has

    def has_change_permission(self, request: HttpRequest, obj: Schedule | None = None) -> bool:
        return obj is None and super().has_change_permission(request)

    def has_delete_permission(self, request: HttpRequest, obj: Schedule | None = None) -> bool:
        return False  # the next runtime start would record it again

    @admin.display(description="next run", ordering="next_run_at")
    def next_run(self, schedule: Schedule) -> str:
        if schedule.paused:
            return "paused"
        if schedule.orphaned:
            return "not run: no process knows its task"
        when = localize(timezone.localtime(schedule.next_run_at))
        if schedule.next_run_at <= timezone.now():
            return f"{when} (due)"
        return f"{when} (in {timeuntil(schedule.next_run_at)})"

    @admin.action(description="Pause the selected schedules", permissions=["change"])
    def pause(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        self._set_paused(request, queryset, paused=True)

    @admin.action(description="Resume the selected schedules", permissions=["change"])
    def resume(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        self._set_paused(request, queryset, paused=False)

    def _set_paused(
        self, request: HttpRequest, queryset: QuerySet[Schedule], *, paused: bool
    ) -> None:
        names = list(queryset.filter(paused=not paused).values_list("name", flat=True))
        changed = 0
        for name in names:
            try:
                (store.pause_schedule if paused else store.resume_schedule)(name)
            except ScheduleDoesNotExist:
                continue  # gone since the list was shown: counted as left alone
            changed += 1
        word = "paused" if paused else "resumed"
        skipped = queryset.count() - changed
        why = "already paused" if paused else "not paused"
        _report(self, request, f"{_plural(changed, 'schedule')} {word}", skipped, why)


@admin.register(Worker)
class WorkerAdmin(_WorkerAdmin):
    list_display = (
        "__str__",
        "heartbeat",
        "leader",
        "concurrency",
        "running",
        "serves",
        "started_at",
    )
    list_filter = ("leader",)
    ordering = ("-leader", "host", "pid")
    fields = (
        "id",
        "host",
        "pid",
        "serves",
        "concurrency",
        "running",
        "started_at",
        "heartbeat",
        "leader",
    )
    readonly_fields = ("serves", "running", "heartbeat")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Worker]:
        """The heartbeat's age by the database's clock (which wrote it), not this host's."""
        running = (
            TaskRun.objects.filter(worker_id=OuterRef("id"), status=RUNNING)
            .order_by()
            .values("worker_id")
            .annotate(n=Count("id"))
            .values("n")
        )
        return (
            super()
            .get_queryset(request)
            .annotate(
                heartbeat_age=ExpressionWrapper(Now() - F("heartbeat_at"), DurationField()),
                running_count=Coalesce(Subquery(running), 0),
            )
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Worker | None = None) -> bool:
        return False  # a runtime's row is its own, from joining to leaving

    def has_delete_permission(self, request: HttpRequest, obj: Worker | None = None) -> bool:
        return False

    @admin.display(description="heartbeat", ordering="heartbeat_at")
    def heartbeat(self, worker: Worker) -> str:
        age: timedelta = getattr(worker, "heartbeat_age", timedelta(0))
        lost = age.total_seconds() > conf.get().worker_timeout
        return f"{_span(age)} ago" + (" (lost: its runs will be rescued)" if lost else "")

    @admin.display(description="running")
    def running(self, worker: Worker) -> int:
        return int(getattr(worker, "running_count", 0))

    @admin.display(description="queues")
    def serves(self, worker: Worker) -> str:
        return "every queue" if worker.queues is None else ", ".join(worker.queues)
