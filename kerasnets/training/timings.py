"""Where a run's wall time goes: named spans that add up to the total.

The trainer times setup, the first step (tracing and graph optimisation), the other training
steps, per-epoch validation, backups and history, the final evaluation and each export with its
verification. ``summary.json`` carries them under ``"timings"``; ``other`` is what no span covers,
so the parts always add up to ``total``.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator

__all__ = ["Timings", "process_start_time", "describe"]


def process_start_time() -> float | None:
    """Wall-clock time this process started (Linux ``/proc``; within 10 ms), or None elsewhere.

    The CLI counts from here, so that interpreter start-up and imports are part of the timings.
    The process's age is read against ``/proc/uptime`` (the clock its start time is counted on),
    now: ``/proc/stat``'s ``btime`` (whole seconds) drifts from the wall clock on a virtual machine
    that was paused or had its clock stepped (a run's start-up was once reported 60 s too long).
    """
    try:
        with open("/proc/self/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        with open("/proc/uptime") as handle:
            uptime = float(handle.read().split()[0])
        return time.time() - (uptime - int(fields[19]) / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return None


class Timings:
    """Wall-clock seconds per named span, summed over repeats, in the order first seen.

    ``counts`` records how often a span ran (e.g. the number of training steps or backups).
    """

    def __init__(self, started: float | None = None):
        self.started = time.time() if started is None else started
        self.seconds: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    def add(self, name: str, seconds: float, count: int = 1) -> None:
        """Add ``seconds`` (``count`` repeats) to span ``name``."""
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds
        self.counts[name] = self.counts.get(name, 0) + count

    @contextlib.contextmanager
    def span(self, name: str) -> Iterator[None]:
        """Time the ``with`` body as span ``name``."""
        begin = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - begin)

    def report(self) -> dict:
        """``{"total", "other", "spans": {name: seconds}, "counts": {name: repeats}}`` up to now."""
        total = time.time() - self.started
        spans = {name: round(value, 2) for name, value in self.seconds.items()}
        return {"total": round(total, 1), "other": round(total - sum(self.seconds.values()), 2),
                "spans": spans, "counts": dict(self.counts)}


def describe(report: dict) -> str:
    """One line for people: ``total`` and every span (with its count where it repeats), then ``other``."""
    counts = report.get("counts", {})
    parts = []
    for name, seconds in report["spans"].items():
        count = counts.get(name, 1)
        if name == "train_steps":
            parts.append(f"{count} steps {seconds:.1f} ({seconds / max(count, 1):.3f} s each)")
        else:
            parts.append(f"{name.replace('_', ' ')} {seconds:.1f}" + (f" ({count}x)" if count > 1 else ""))
    parts.append(f"other {report['other']:.1f}")
    return f"{report['total']:.0f} s: " + ", ".join(parts)
