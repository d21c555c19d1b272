"""From the runs' raw figures to medians, the side-by-side table and its footnotes.

Plain data in, text out: nothing here imports a system, and nothing is asserted.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any

from tests.benchmarks.report import table

from .systems import PEERS, SPECS, capable


@dataclass(frozen=True)
class Row:
    workload: str
    metric: str
    label: str
    higher_is_better: bool


def rows_for(workloads: list[str]) -> list[Row]:
    rows: list[Row] = []
    for workload in workloads:
        if workload.startswith("drain"):
            rows.append(Row(workload, "jobs_per_s", f"{workload} jobs/s", True))
        elif workload == "enqueue_bulk":
            rows.append(Row(workload, "per_s", f"{workload} rows/s", True))
        elif workload.startswith("enqueue"):
            rows.append(Row(workload, "per_s", f"{workload} /s", True))
        else:
            for metric, label in (
                ("p50_ms", "p50 ms"),
                ("p95_ms", "p95 ms"),
                ("p99_ms", "p99 ms"),
                ("enqueue_p50_ms", "enqueue call p50 ms"),
            ):
                rows.append(Row(workload, metric, f"{workload} {label}", False))
    return rows


def ok_figures(runs: list[dict[str, Any]], system: str, workload: str) -> list[dict[str, Any]]:
    """The figures of the repetitions that ran, less those whose counts disagree (they measured
    something else: see miscounted)."""
    return [
        r["figures"]
        for r in runs
        if r["system"] == system
        and r["workload"] == workload
        and r["ok"]
        and not miscounted(r["figures"])
    ]


def medians(
    runs: list[dict[str, Any]], systems: list[str], workloads: list[str]
) -> dict[str, dict[str, dict[str, float]]]:
    """workload -> system -> metric -> the median over the successful repetitions."""
    found: dict[str, dict[str, dict[str, float]]] = {}
    for workload in workloads:
        for system in systems:
            figures = ok_figures(runs, system, workload)
            if not figures:
                continue
            keys = {k for f in figures for k, v in f.items() if isinstance(v, int | float)}
            values = {}
            for key in sorted(keys):
                numbers = [
                    float(f[key])
                    for f in figures
                    if isinstance(f.get(key), int | float)
                    and not isinstance(f.get(key), bool)
                    and not math.isnan(float(f[key]))
                ]
                if numbers:
                    values[key] = statistics.median(numbers)
            found.setdefault(workload, {})[system] = values
    return found


def number(value: float, metric: str) -> str:
    if value is None or math.isnan(value):
        return "-"
    if metric.endswith("_ms"):
        return f"{value:.2f}" if value < 10 else f"{value:.1f}" if value < 1000 else f"{value:,.0f}"
    return f"{value:,.0f}"


class Notes:
    """Numbered footnotes, each text once."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def ref(self, text: str) -> str:
        if text not in self.texts:
            self.texts.append(text)
        return f"[{self.texts.index(text) + 1}]"


def render(
    runs: list[dict[str, Any]],
    systems: list[str],
    workloads: list[str],
    found: dict[str, dict[str, dict[str, float]]],
    budget: float,
) -> str:
    """The table (one row per figure, one column per system, then autotask / fastest peer) and
    its footnotes: missing capabilities, errors, runs cut by the budget, odd counts."""
    notes = Notes()
    peers = [s for s in systems if s in PEERS]
    headers = ["workload", *systems]
    if "autotask" in systems and peers:
        headers.append("autotask / fastest peer")
    body: list[list[str]] = []
    for row in rows_for(workloads):
        cells = [row.label]
        for system in systems:
            cells.append(cell(runs, found, system, row, notes, budget))
        if len(headers) > len(systems) + 1:
            cells.append(ratio(found, row, peers))
        body.append(cells)
    lines = [table("medians of the repetitions", headers, body)]
    lines.append(
        "ratio: autotask's median / the best peer's (highest rate, lowest ms), that peer in "
        "brackets; for rates above 1 is autotask ahead, for ms below 1."
    )
    cpu = cpu_table(systems, workloads, found)
    if cpu:
        lines += ["", cpu]
    if notes.texts:
        lines.append("")
        lines += [f"[{i}] {text}" for i, text in enumerate(notes.texts, 1)]
    return "\n".join(lines)


# What the drains cost the machine (common.CpuMeter): whether its CPUs were the limit, and how
# much of a job's cost was PostgreSQL's.
CPU_METRICS = (
    ("cpus_busy_pct", "CPUs busy %"),
    ("cpu_us_per_job", "CPU us/job, all processes"),
    ("postgres_cpu_us_per_job", "PostgreSQL's CPU us/job"),
)


def cpu_table(
    systems: list[str], workloads: list[str], found: dict[str, dict[str, dict[str, float]]]
) -> str:
    """The drains' CPU figures, one row per drain and metric; empty where none were taken."""
    body = []
    for workload in (w for w in workloads if w.startswith("drain")):
        for metric, label in CPU_METRICS:
            values = [found.get(workload, {}).get(system, {}).get(metric) for system in systems]
            if any(value is not None for value in values):
                cells = ["-" if v is None or math.isnan(v) else f"{v:,.0f}" for v in values]
                body.append([f"{workload} {label}", *cells])
    if not body:
        return ""
    return table(
        "CPU time during the drains, medians (the whole machine, from /proc)",
        ["drain", *systems],
        body,
    )


def cell(
    runs: list[dict[str, Any]],
    found: dict[str, dict[str, dict[str, float]]],
    system: str,
    row: Row,
    notes: Notes,
    budget: float,
) -> str:
    if not capable(system, row.workload):
        return "- " + notes.ref(f"{system} {row.workload}: {SPECS[system].missing[row.workload]}")
    mine = [r for r in runs if r["system"] == system and r["workload"] == row.workload]
    if not mine:
        return ""
    marks = ""
    for r in mine:
        if not r["ok"]:
            marks += notes.ref(f"{system} {row.workload} repetition {r['rep'] + 1}: {r['error']}")
    figures = [r["figures"] for r in mine if r["ok"]]  # odd ones too, for the footnotes
    value = found.get(row.workload, {}).get(system, {}).get(row.metric)
    if value is None:
        return "err " + marks
    cut = [f for f in figures if f.get("cut")]
    if cut and row.metric in ("jobs_per_s", "per_s"):
        done = ", ".join(f"{f['done']:,}" for f in cut)
        marks += notes.ref(
            f"{system} {row.workload}: not all of n={cut[0]['n']:,} within the {budget:g} s "
            f"budget in {len(cut)} of {len(figures)} repetitions (done: {done}); the figure is "
            "the rate of the part done"
        )
    short = [f for f in figures if "measured" in f and f["measured"] < f["n"]]
    if short and row.metric == "p50_ms":
        measured = ", ".join(str(f["measured"]) for f in short)
        lost = sum(f.get("timeouts", 0) for f in short)
        marks += notes.ref(
            f"{system} {row.workload}: only {measured} of {short[0]['n']} probes measured "
            f"(no new probe after the {budget:g} s budget"
            + (f"; {lost} never started within 10 s)" if lost else ")")
        )
    odd = [f for f in figures if miscounted(f)]
    if odd and row.metric in ("jobs_per_s", "per_s"):
        marks += notes.ref(
            f"{system} {row.workload}: {len(odd)} of {len(figures)} repetitions left out of the "
            "median, their counts disagree (another process on the database?): "
            + "; ".join(counts(f) for f in odd)
        )
    return number(value, row.metric) + (" " + marks if marks else "")


def miscounted(figures: dict[str, Any]) -> bool:
    """A drain whose job functions ran other than once per finished job or whose table has
    other than that many done, or an enqueue series whose table holds other than the rows it
    enqueued (a drain cut by the budget still has some running: not checked)."""
    if "calls" in figures:
        if figures.get("cut"):
            return False
        return any(figures.get(k) not in (None, figures["done"]) for k in ("calls", "done_rows"))
    return "rows" in figures and figures["rows"] != figures["done"]


def counts(figures: dict[str, Any]) -> str:
    keys = ("done", "calls", "done_rows", "rows")
    return ", ".join(f"{k} {figures[k]}" for k in keys if figures.get(k) is not None)


def ratio(found: dict[str, dict[str, dict[str, float]]], row: Row, peers: list[str]) -> str:
    by_system = found.get(row.workload, {})
    mine = by_system.get("autotask", {}).get(row.metric)
    theirs = {
        p: by_system[p][row.metric]
        for p in peers
        if row.metric in by_system.get(p, {}) and not math.isnan(by_system[p][row.metric])
    }
    if mine is None or math.isnan(mine) or not theirs:
        return "-"
    pick = max if row.higher_is_better else min
    best = pick(theirs, key=lambda p: theirs[p])
    if theirs[best] == 0:
        return "-"
    return f"{mine / theirs[best]:.2f} ({best})"
