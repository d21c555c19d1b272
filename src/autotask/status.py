"""Run statuses and ``TaskError``: the words every other module shares; imports nothing of ours.

A status is the same string in Python, in the table, in NOTIFY payloads and in the admin.
``TaskError`` is how a failure is kept: its JSON form is what the ``error`` column holds, so
both directions of that translation live here, beside the class.
"""

from __future__ import annotations

import json
import traceback as _traceback
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    WAITING = "waiting"
    RUNNING = "running"
    DONE = "done"
    ERROR = "error"
    CANCELLED = "cancelled"

    @classmethod
    def choices(cls) -> list[tuple[str, str]]:
        return [(s.value, s.name.title()) for s in cls]


WAITING = Status.WAITING
RUNNING = Status.RUNNING
DONE = Status.DONE
ERROR = Status.ERROR
CANCELLED = Status.CANCELLED
FINAL_STATUSES = frozenset({DONE, ERROR, CANCELLED})

# What a stored error keeps of an exception: a 20 MB message must not become a 20 MB row (the
# start of a message says what went wrong; the end of a traceback says where).
MAX_MESSAGE = 10_000
MAX_TRACEBACK = 100_000


@dataclass(frozen=True, kw_only=True)
class TaskError:
    """Why a run failed: the exception's class path, its message and traceback."""

    exception_class_path: str
    message: str
    traceback: str

    @classmethod
    def from_exception(cls, exc: BaseException) -> TaskError:
        """Never raises, whatever the exception does (a ``__str__`` that raises, a huge text)."""
        kind = type(exc)
        try:
            message = str(exc)
        except Exception:
            message = f"<{kind.__qualname__}: str() of it failed>"
        trace = "".join(_traceback.format_exception(exc))
        if len(message) > MAX_MESSAGE:
            message = f"{message[:MAX_MESSAGE]}... [{len(message) - MAX_MESSAGE:,} more characters]"
        if len(trace) > MAX_TRACEBACK:
            trace = f"[{len(trace) - MAX_TRACEBACK:,} characters cut]...{trace[-MAX_TRACEBACK:]}"
        return cls(
            exception_class_path=f"{kind.__module__}.{kind.__qualname__}",
            message=message,
            traceback=trace,
        )

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> TaskError | None:
        if not data:
            return None
        return cls(
            exception_class_path=str(data.get("type", "")),
            message=str(data.get("message", "")),
            traceback=str(data.get("traceback", "")),
        )

    def to_json(self) -> str:
        """The ``error`` column's JSON; always storable, whatever the exception said."""
        error = {
            "type": self.exception_class_path,
            "message": self.message,
            "traceback": self.traceback,
        }
        return json.dumps({key: _storable_text(text) for key, text in error.items()})


def _storable_text(text: str) -> str:
    """jsonb refuses NUL and lone surrogates, so both are written out as escapes instead."""
    text = text.replace("\x00", "\\x00")
    return text.encode("utf-8", "backslashreplace").decode("utf-8")
