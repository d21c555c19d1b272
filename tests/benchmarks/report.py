"""Plain-text tables for the figures, and the small statistics they need."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation between closest ranks."""
    if not values:
        return math.nan
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def ms(seconds: float | None) -> str:
    if seconds is None or math.isnan(seconds):
        return "-"
    value = seconds * 1000
    return f"{value:.2f}" if value < 10 else f"{value:.1f}" if value < 1000 else f"{value:.0f}"


def rate(count: float, seconds: float | None) -> str:
    if not seconds or seconds <= 0 or count <= 0:
        return "-"
    return f"{count / seconds:,.0f}"


def secs(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.2f}"


def table(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A title, then aligned columns: the first left-aligned, the others right-aligned."""
    cells = [[str(h) for h in headers], *([str(c) for c in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        parts = [row[0].ljust(widths[0])]
        parts += [cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)]
        return "  ".join(parts).rstrip()

    rule = "-" * len(line(cells[0]))
    body = [line(row) for row in cells[1:]]
    return "\n".join([title, rule, line(cells[0]), rule, *body, rule])
