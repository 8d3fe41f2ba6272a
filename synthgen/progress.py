"""The training progress bar (rich): ``synthgen run`` and ``Synthesizer.fit`` draw the same one
(epoch, epsilon spent so far, losses, elapsed and remaining time) on stderr, or in a notebook's
output cell."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


def wanted(progress: bool | None) -> bool:
    """``progress`` when given; by default a bar only where someone watches: a terminal on
    stderr or a Jupyter kernel (not a pipe, a log file or a test)."""
    if progress is not None:
        return bool(progress)
    try:
        if sys.stderr is not None and sys.stderr.isatty():
            return True
    except (AttributeError, ValueError):
        pass
    return _in_notebook()


def _in_notebook() -> bool:
    shell = sys.modules.get("IPython")
    if shell is None:
        return False
    try:
        ip = shell.get_ipython()
    except Exception:  # noqa: BLE001 - any IPython oddity: no bar
        return False
    return ip is not None and type(ip).__name__ == "ZMQInteractiveShell"


@contextmanager
def training_bar(epsilon: float, *, enabled: bool = True
                 ) -> Iterator[Callable[[Any], None]]:
    """A callback for ``fit(on_progress=...)`` that advances a bar while the block runs."""
    if not enabled:
        yield lambda p: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[eps]}"),
        TextColumn("{task.fields[losses]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=False,
    )
    with bar:
        task = bar.add_task("training", total=None, eps="-", losses="")

        def update(p: Any) -> None:
            bar.update(task, total=p.total_steps, completed=p.step,
                       description=f"epoch {p.epoch:.1f}",
                       eps=f"ε {p.epsilon:.3f}/{epsilon:g}",
                       losses=f"D {p.d_loss:.3f} G {p.g_loss:.3f}")

        yield update
