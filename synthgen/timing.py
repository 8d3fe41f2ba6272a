"""Wall and CPU seconds per stage of a run, for the owner-only evaluation's ``timings``.

CPU seconds are the process's user + system time over all its threads (``time.process_time``):
on a machine shared with other work the wall time grows with the load, the CPU time far less,
so a profile of where the time goes reads both (bench/README.md, "Wall time of `synthgen run`
on Adult").
"""

from __future__ import annotations

import os
import time


class StageClock:
    """Laps of named stages: ``lap("domains")`` charges the time since the previous lap (or
    the clock's start) to ``domains_s`` and ``domains_cpu_s`` in :attr:`timings`."""

    def __init__(self, timings: dict[str, float] | None = None) -> None:
        self.timings = timings if timings is not None else {}
        self._wall = time.perf_counter()
        self._cpu = time.process_time()

    def lap(self, stage: str) -> float:
        """Charge the time since the last lap to ``stage`` (added to what it had); returns
        the wall seconds charged."""
        wall, cpu = time.perf_counter(), time.process_time()
        spent = wall - self._wall
        self.timings[f"{stage}_s"] = self.timings.get(f"{stage}_s", 0.0) + spent
        self.timings[f"{stage}_cpu_s"] = self.timings.get(f"{stage}_cpu_s", 0.0) + (
            cpu - self._cpu)
        self._wall, self._cpu = wall, cpu
        return spent


def process_age() -> float:
    """Wall seconds since this process started (Linux; 0.0 where /proc does not say): the
    interpreter's start and the imports before a run's first stage."""
    try:
        with open("/proc/self/stat") as f:
            ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        return max(0.0, time.clock_gettime(time.CLOCK_BOOTTIME)
                   - ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError, AttributeError):
        return 0.0
