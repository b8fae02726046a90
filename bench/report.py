"""The results table: every metric on every server (median, with min and max
of the repetitions), the Myelin/Synapse ratios, and whether the issue's
targets are met; plus the header that makes a run reproducible (command,
date, machine, versions)."""

from __future__ import annotations

import os
import platform
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

import psutil

from bench.targets import REFERENCE
from bench.workloads import Metric

# Which workload produces a metric (by the metric key's prefix), so that a
# failed workload's error can be shown in its cells.
_WORKLOAD_OF_PREFIX = {"register": "register", "send": "send", "send_sync": "send-sync",
                       "initial_sync": "sync", "messages": "messages", "join": "join",
                       "stateres": "stateres", "peak_rss_mb": "peak-rss",
                       "fed_send": "fed-send", "fed_join": "fed-join"}


def workload_of(metric_key: str) -> str:
    prefix = metric_key.split(".", 1)[0]
    if prefix.startswith("idle_sync_"):
        return "sync"
    return _WORKLOAD_OF_PREFIX.get(prefix, prefix)


@dataclass
class Results:
    # target -> metric key -> one figure per repetition
    figures: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    # target -> workload name (or "start") -> error text
    errors: dict[str, dict[str, str]] = field(default_factory=dict)

    def add(self, target: str, figures: dict[str, list[float]]) -> None:
        self.figures.setdefault(target, {}).update(figures)

    def fail(self, target: str, workload: str, error: BaseException | str) -> None:
        text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        self.errors.setdefault(target, {})[workload] = " ".join(text.split())

    def median(self, target: str, key: str) -> float | None:
        values = self.figures.get(target, {}).get(key)
        return statistics.median(values) if values else None


def _number(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _cell(results: Results, target: str, key: str) -> str:
    values = results.figures.get(target, {}).get(key)
    if values:
        middle = _number(statistics.median(values))
        if len(values) == 1:
            return middle
        return f"{middle} ({_number(min(values))}-{_number(max(values))})"
    errors = results.errors.get(target, {})
    error = errors.get("start") or errors.get(workload_of(key))
    if error:
        return f"error: {error[:100]}".replace("|", "/")
    return "—"


def _ratio(results: Results, mine: str, theirs: str, key: str) -> float | None:
    a, b = results.median(mine, key), results.median(theirs, key)
    if a is None or b is None or b == 0:
        return None
    return a / b


def _target_text(metric: Metric) -> str:
    if metric.target_ratio is None:
        return ""
    ratio = metric.target_ratio
    shown = f"1/{round(1 / ratio)}" if ratio < 1 else f"{ratio:g}"
    text = f"{'≥' if metric.higher_is_better else '≤'} {shown}x" if ratio != 1 else "< 1x"
    return f"{text} ({' and '.join(metric.judged)} only)" if metric.judged else text


def target_met(metric: Metric, ratio: float | None) -> bool | None:
    if metric.target_ratio is None or ratio is None:
        return None
    if metric.higher_is_better:
        return ratio >= metric.target_ratio
    if metric.target_ratio == 1:
        return ratio < 1
    return ratio <= metric.target_ratio


def table(results: Results, metrics: Sequence[Metric], targets: Sequence[str]) -> str:
    """A markdown table; a pair of columns for each Myelin deployment with
    its Synapse reference when both ran."""
    columns: list[tuple[str, str | None]] = []
    for mine, theirs in REFERENCE.items():
        columns += [(single, None) for single in (mine, theirs) if single in targets]
        if mine in targets and theirs in targets:
            columns.append((mine, theirs))
    header = ["metric"] + [f"{a}/{b}" if b else a for a, b in columns] + ["target"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for metric in metrics:
        row = [metric.label]
        verdicts: list[str] = []
        for column, reference in columns:
            if reference is None:
                row.append(_cell(results, column, metric.key))
                continue
            ratio = _ratio(results, column, reference, metric.key)
            row.append(f"{ratio:.2f}x" if ratio is not None else "—")
            met = target_met(metric, ratio) if metric.judged is None or column in metric.judged else None
            if met is not None:
                verdicts.append(f"{column}: {'met' if met else 'MISSED'}")
        target = _target_text(metric)
        row.append(f"{target} ({'; '.join(verdicts)})" if target and verdicts else target)
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def idle_flatness(results: Results, targets: Sequence[str], room_counts: Sequence[int]) -> list[str]:
    """How an idle incremental /sync grows from the fewest to the most rooms
    (the target: flat)."""
    lines: list[str] = []
    low, high = min(room_counts), max(room_counts)
    for target in targets:
        a = results.median(target, f"idle_sync_{low}.p50_ms")
        b = results.median(target, f"idle_sync_{high}.p50_ms")
        if a and b:
            lines.append(f"- {target}: idle /sync at {high} rooms takes {b / a:.2f}x its time at {low} rooms")
    return lines


def machine() -> str:
    cpu_model = ""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    cpu_model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    memory_gib = psutil.virtual_memory().total / 2**30
    return (f"{os.cpu_count()} cores ({cpu_model or platform.processor()}), {memory_gib:.1f} GiB memory, "
            f"{platform.system()} {platform.release()}, Python {platform.python_version()}")
