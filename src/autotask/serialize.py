"""Arguments and results travel as JSON, and only values that survive the trip are let in.

Surviving means coming back unchanged from PostgreSQL's jsonb: no tuples (they return as lists),
no sets, dates or model instances, no NaN, no NUL characters. Checking at enqueue time turns a
late, confusing failure in a worker into an immediate error naming the argument. (One
difference is let through: jsonb prints an integral float of 1e16 or more without a decimal
point, so it returns as an int.) No pickle anywhere: a row can only ever describe data.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

_HINTS: dict[str, str] = {
    "datetime": "pass value.isoformat() and parse it in the task",
    "date": "pass value.isoformat() and parse it in the task",
    "time": "pass value.isoformat() and parse it in the task",
    "timedelta": "pass value.total_seconds()",
    "Decimal": "pass str(value)",
    "UUID": "pass str(value)",
    "set": "pass a sorted list",
    "frozenset": "pass a sorted list",
    "tuple": "pass a list (JSON has no tuples)",
    "bytes": "pass a base64 or hex string",
    "str": "jsonb cannot hold NUL ('\\x00') or lone surrogates: clean the text or encode it",
}


def _hint(value: Any) -> str:
    if hasattr(value, "_meta") and hasattr(value, "pk"):
        return "pass its primary key (obj.pk) and load it in the task"
    return _HINTS.get(
        type(value).__name__, "pass plain JSON: str, int, float, bool, None, list, dict"
    )


def _short(value: Any) -> str:
    """Its repr, whole when it is of a sane length (a datetime's is about 80 characters)."""
    text = repr(value)
    return text if len(text) <= 120 else f"{text[:117]}..."


def _problem_text(where: str, bad: Any, *, returned: bool) -> str:
    """What is wrong with *this* value, and what to do instead."""
    if isinstance(bad, float):
        why = "is not a finite number, and JSON has no NaN or infinity"
        hint = "pass None, or a string such as 'inf'"
    elif " key " in where and not isinstance(bad, str):
        why = f"is a dict key of type {type(bad).__name__}; JSON object keys are strings"
        hint = "use str keys (an int key would come back as a string)"
    else:
        why = f"is of type {type(bad).__name__}, which cannot travel as JSON"
        hint = _hint(bad)
    if returned:
        hint = hint.replace("pass ", "return ", 1)
    return f"{where} ({_short(bad)}) {why}: {hint}."


def storable(text: str) -> bool:
    """jsonb refuses NUL and text that is not valid Unicode (lone surrogates)."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# Deeper nesting than this is refused at enqueue: decoding it again in the worker (and walking it
# here) would come close to Python's recursion limit.
MAX_DEPTH = 100


class _TooDeep(Exception):
    def __init__(self, path: str) -> None:
        self.path = path


def _find_problem(value: Any, path: str, depth: int = 0) -> tuple[str, Any] | None:
    """The path and value of the first part of ``value`` that JSON would not give back as is."""
    if depth > MAX_DEPTH:
        raise _TooDeep(path)
    if value is None or isinstance(value, bool | int):
        return None
    if isinstance(value, str):
        return None if storable(value) else (path, value)
    if isinstance(value, float):
        return None if math.isfinite(value) else (path, value)
    if type(value) is list:
        for index, item in enumerate(value):
            problem = _find_problem(item, f"{path}[{index}]", depth + 1)
            if problem:
                return problem
        return None
    if type(value) is dict:
        for key, item in value.items():
            if not isinstance(key, str) or not storable(key):
                return (f"{path} key {key!r}", key)
            problem = _find_problem(item, f"{path}[{key!r}]", depth + 1)
            if problem:
                return problem
        return None
    return (path, value)


def _check(value: Any, path: str, what: str) -> None:
    try:
        problem = _find_problem(value, path)
    except _TooDeep as deep:
        raise TypeError(
            f"{what} {path} is nested more than {MAX_DEPTH} lists or dicts deep (at "
            f"{deep.path[:200]}...): flatten it, or store it elsewhere and pass its key."
        ) from None
    if problem is None:
        return
    where, bad = problem
    raise TypeError(f"{what} {_problem_text(where, bad, returned=path == 'return value')}")


def dump_call(
    task_name: str,
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    names: Sequence[str] = (),
) -> tuple[str, str]:
    """JSON text for a call's arguments; TypeError naming the first argument that is not JSON.

    ``names`` gives the parameter name of each positional argument, where known.
    """
    for index, arg in enumerate(args):
        label = repr(names[index]) if index < len(names) else str(index)
        _check(arg, f"argument {label}", f"{task_name}():")
    for name, arg in kwargs.items():
        if not storable(name):
            raise TypeError(
                f"{task_name}(): the keyword argument name {name!r:.100} has a NUL character or "
                "a lone surrogate, which PostgreSQL cannot store."
            )
        _check(arg, f"argument {name!r}", f"{task_name}():")
    # Calls without positional or keyword arguments are common, and json.dumps costs about a
    # microsecond even for an empty list: a fifth of a bulk enqueue's Python time per call.
    args_json = json.dumps(list(args)) if args else "[]"
    return args_json, json.dumps(dict(kwargs)) if kwargs else "{}"


def dump_result(task_name: str, value: Any) -> str:
    """JSON text for a task's return value; TypeError when it is not JSON."""
    _check(value, "return value", f"{task_name}():")
    return json.dumps(value)
