"""Workflows: runs that wait for other runs.

``chain(a.s(1), b.s(), c.s())`` runs a, then b given a's result as its first argument, then c
given b's; a step that fails (after its retries) stops the chain, and the steps after it end
CANCELLED, saying why. ``group(t.s(i) for i in range(100))`` runs its members side by side;
``.then(done.s())`` adds a step that runs once after all of them have finished, given the list
of their results (``None`` for a member that did not end DONE), or, with
``only_on_success=True``, only if all of them succeeded. Chains and groups nest: a group in a
chain runs after the step before it and hands the list of its members' results to the next.
``task.si(...)`` is a step that is given no result.

A workflow is enqueued as rows, every step a run from the start, in one statement (so in one
transaction: the caller's, for the sync ``enqueue()``). No process holds a workflow in memory:
the database moves it on as its runs finish (a trigger, in the finishing transaction; see
migrations/0009_workflows.py), exactly once whichever processes finish them, and across
crashes, since a rescued run finishes later like any other.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from asgiref.sync import sync_to_async

from . import conf, signals, store, testing, wsgi
from .deferred import Deferred, refuse_in_event_loop
from .exceptions import InvalidTaskOptions
from .handles import AsyncTaskHandle, TaskHandle
from .store import RunRecord, WorkflowEdge, WorkflowStep
from .workflow_handles import AsyncWorkflowHandle, WorkflowHandle

if TYPE_CHECKING:
    from .tasks import Task

# The most steps one workflow may have: each is a row of one INSERT, and each handle re-reads
# them all when a step's status changes.
MAX_STEPS = 10_000


class _Step:
    """What chains and groups are made of; any step can be enqueued on its own as a workflow."""

    def enqueue(self) -> WorkflowHandle:
        """Enqueue the workflow through Django's connection, joining any open transaction."""
        refuse_in_event_loop("enqueue()", "await workflow.defer()")
        plan = _Plan(self)
        workflow_id, records, transaction = store.insert_workflow(plan.steps, plan.edges)
        if conf.eager():  # steps come in an order where each follows those it needs
            for record in records:
                testing.run_eagerly(record.id)
            handle = WorkflowHandle.get(workflow_id)
        else:
            wsgi.enqueued()
            handle = WorkflowHandle(workflow_id, plan.marked(records), enqueued_by=transaction)
        for node, record in zip(plan.nodes, records, strict=True):
            sent = signals.task_enqueued.send_robust(sender=node.task, handle=TaskHandle(record))
            signals.log_failures(sent)
        return handle

    def defer(self) -> Deferred[AsyncWorkflowHandle]:
        """Enqueue the workflow without blocking the event loop (async connections, committing
        on its own). Await it."""
        plan = _Plan(self)  # a bad step fails here, awaited or not
        return Deferred(self._defer(plan), "workflow.defer")

    async def _defer(self, plan: _Plan) -> AsyncWorkflowHandle:
        workflow_id, records = await store.ainsert_workflow(plan.steps, plan.edges)
        if conf.eager():
            for record in records:
                await sync_to_async(testing.run_eagerly_in_thread, thread_sensitive=False)(
                    record.id
                )
            handle = await AsyncWorkflowHandle.get(workflow_id)
        else:
            handle = AsyncWorkflowHandle(workflow_id, plan.marked(records))
        for node, record in zip(plan.nodes, records, strict=True):
            sent = await signals.task_enqueued.asend_robust(
                sender=node.task, handle=AsyncTaskHandle(record)
            )
            signals.log_failures(sent)
        return handle


@dataclass(frozen=True, slots=True, eq=False)
class Signature(_Step):
    """A call of a task not made yet (``task.s(...)``, ``task.si(...)``): a step."""

    task: Task[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    takes_result: bool = True  # given the result(s) of the step before, as its first argument

    def __repr__(self) -> str:
        return f"{self.task.name}.{'s' if self.takes_result else 'si'}(...)"


@dataclass(frozen=True, slots=True, eq=False)
class Chain(_Step):
    """Steps one after another (``chain(...)``, ``group(...).then(...)``)."""

    steps: tuple[_Step, ...]
    # Per link between two steps: whether the later one runs only if the earlier succeeded.
    required: tuple[bool, ...] = field(default=())

    def __post_init__(self) -> None:
        if not self.steps:
            raise InvalidTaskOptions("chain() needs at least one step.")
        if not self.required:
            object.__setattr__(self, "required", (True,) * (len(self.steps) - 1))


@dataclass(frozen=True, slots=True, eq=False)
class Group(_Step):
    """Steps side by side (``group(...)``)."""

    members: tuple[_Step, ...]

    def __post_init__(self) -> None:
        if not self.members:
            raise InvalidTaskOptions("group() needs at least one member.")

    def then(self, step: _Step, *, only_on_success: bool = False) -> Chain:
        """``step`` runs once after every member has finished, given the list of their results
        (None for a member that did not end DONE); with ``only_on_success``, only if every
        member ended DONE (else it ends CANCELLED, saying which failed)."""
        return Chain((self, _checked(step)), (only_on_success,))


def chain(*steps: _Step) -> Chain:
    """Run ``steps`` one after another, each given the result of the one before as its first
    argument (``task.si()``: not given it); the first failure cancels the rest."""
    return Chain(tuple(_checked(step) for step in steps))


def group(*members: _Step | Iterable[_Step]) -> Group:
    """Run ``members`` side by side: ``group(a.s(), b.s())`` or ``group(t.s(i) for i in ...)``."""
    if len(members) == 1 and not isinstance(members[0], _Step):
        members = tuple(members[0])
    return Group(tuple(_checked(member) for member in members))


def _checked(step: object) -> _Step:
    if not isinstance(step, _Step):
        raise TypeError(
            f"A workflow's steps are task.s(...), chain(...) or group(...), not {step!r:.100}."
        )
    return step


@dataclass(slots=True)
class _Node:
    task: Task[..., Any]
    signature: Signature
    after: list[int]  # the steps it waits for (indexes into _Plan.nodes)
    required: bool  # whether each of them must succeed for it to run
    result_arg: str | None  # "one" or "list": how it is given their results; None: not given


class _Plan:
    """A workflow laid out as rows: its steps in an order where each follows those it needs,
    and the edges between them."""

    def __init__(self, workflow: _Step) -> None:
        self.nodes: list[_Node] = []
        self._lay_out(workflow, after=[], given=None, required=True)
        if len(self.nodes) > MAX_STEPS:
            raise InvalidTaskOptions(
                f"A workflow has at most {MAX_STEPS:,} steps, not {len(self.nodes):,}."
            )
        awaited = {index for node in self.nodes for index in node.after}
        self._last = [index not in awaited for index in range(len(self.nodes))]
        self.steps = [
            WorkflowStep(
                run=node.task._new_run(
                    node.signature.args, node.signature.kwargs, given=node.result_arg is not None
                ),
                waiting_for=len(node.after),
                has_dependents=index in awaited,
                result_arg=node.result_arg,
            )
            for index, node in enumerate(self.nodes)
        ]
        self.edges = [
            WorkflowEdge(step=index + 1, dependency=dependency + 1, position=position,
                         required=node.required)
            for index, node in enumerate(self.nodes)
            for position, dependency in enumerate(node.after)
        ]  # fmt: skip

    def _lay_out(
        self, step: _Step, *, after: list[int], given: str | None, required: bool
    ) -> tuple[list[int], str | None]:
        """Add ``step`` after the steps ``after`` (whose output is ``given``: "one" result or a
        "list"); the steps it ends with, and what its output is."""
        if isinstance(step, Signature):
            _check_step(step)
            takes = given if step.takes_result and after else None
            self.nodes.append(_Node(step.task, step, after, required, takes))
            return [len(self.nodes) - 1], "one"
        if isinstance(step, Chain):
            ends, output = after, given
            for link, part in enumerate(step.steps):
                must = required if link == 0 else step.required[link - 1]
                ends, output = self._lay_out(part, after=ends, given=output, required=must)
            return ends, output
        assert isinstance(step, Group)
        ends = []
        for member in step.members:
            member_ends, _ = self._lay_out(member, after=after, given=given, required=required)
            ends.extend(member_ends)
        return ends, "list"

    def marked(self, records: list[RunRecord]) -> list[tuple[RunRecord, bool]]:
        """Each step's record with whether it ends the workflow."""
        return list(zip(records, self._last, strict=True))


def _check_step(step: Signature) -> None:
    task = step.task
    if task.unique or task.unique_key is not None:
        raise InvalidTaskOptions(
            f"{task.name}: a unique task cannot be a workflow's step (an enqueue that found "
            "its key taken would make the workflow wait for another caller's run)."
        )
    if task.depends_on:
        raise InvalidTaskOptions(
            f"{task.name}: depends_on= is for a run enqueued on its own; in a workflow, order "
            "steps with chain() and group()."
        )


__all__ = ["MAX_STEPS", "Chain", "Group", "Signature", "chain", "group"]
