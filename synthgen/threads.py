"""How many CPU threads training uses: the one policy of the library, ``synthgen run`` and the
service's training processes.

By default the cores that are free now: all of them on a quiet machine, the cores minus the busy
ones on a shared one (at least one). PyTorch's OpenMP threads spin while they wait, so threads
beyond the free cores cost far more than they bring: Adult at epsilon 1, 2 cores, 6 epochs, two
busy processes beside it: 51 s on one thread, 131 s on two; on the quiet machine 32 s on one,
26 s on two. Left at torch's default (one thread per core), ``Synthesizer.fit`` beside two busy
processes took 544 s where ``synthgen run`` took 32 s.

Light: no torch import at module level (the CLI measures before importing the training stack).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

ENV = "SYNTHGEN_TRAIN_THREADS"  # the service's setting of the same name, read everywhere


def training_threads(threads: int | None = None) -> int:
    """``threads`` when given (at least 1), else ``$SYNTHGEN_TRAIN_THREADS`` when set, else
    :func:`free_cores`."""
    if threads is None and os.environ.get(ENV, "").strip():
        try:
            threads = int(os.environ[ENV])
        except ValueError:
            raise ValueError(f"{ENV} must be a whole number, not {os.environ[ENV]!r}") from None
    if threads is not None:
        if int(threads) < 1:
            raise ValueError(f"threads must be at least 1, not {threads}")
        return int(threads)
    return free_cores()


def set_threads(threads: int | None = None) -> int:
    """Set torch's intra-op threads by the policy; returns the count set."""
    import torch

    count = training_threads(threads)
    torch.set_num_threads(count)
    return count


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """torch's threads at ``count`` inside the block, what they were after it (a library call
    leaves its caller's process as it found it)."""
    import torch

    before = torch.get_num_threads()
    if count != before:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 1)


def free_cores(window_s: float = 0.2) -> int:
    """Usable cores minus those other processes keep busy, measured over ``window_s`` (from
    /proc/stat; the 1-minute load average where there is none, e.g. macOS)."""
    return max(1, usable_cores() - round(_busy_cores(window_s)))


def _busy_cores(window_s: float) -> float:
    def times() -> tuple[int, int, int]:  # (busy, total jiffies, CPUs) over all CPUs
        with open("/proc/stat") as f:
            lines = f.read().splitlines()
        # user nice system idle iowait irq softirq steal (guest time is inside user)
        fields = [int(v) for v in lines[0].split()[1:9]]
        cpus = sum(1 for line in lines if line.startswith("cpu") and line[3:4].isdigit())
        return sum(fields) - fields[3] - fields[4], sum(fields), cpus

    try:
        busy0, total0, cpus = times()
        time.sleep(window_s)
        busy1, total1, _ = times()
    except (OSError, ValueError, IndexError):
        return os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    return cpus * (busy1 - busy0) / max(total1 - total0, 1)
