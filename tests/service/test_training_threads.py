"""A training process sets torch's thread count from the settings, in either engine: the Celery
task and the embedded engine's subprocess both run ``execute_job``, which sets it first."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = """
import sys
import torch
import synthgen.threads
if len(sys.argv) > 1:
    synthgen.threads._busy_cores = lambda window_s: float(sys.argv[1])
from synthgen.service.db import Database
from synthgen.service.runner import execute_job
from synthgen.service.settings import Settings

settings = Settings()
Database(settings.db_url).create_all()
torch.set_num_threads(7)  # what a worker process might have inherited
print(execute_job("job_none", "test-owner", settings), torch.get_num_threads())
"""


def run_job_process(tmp_path: Path, threads: str | None, busy: float | None = None
                    ) -> list[str]:
    """What execute_job answered (nothing to claim) and torch's threads after it."""
    env = {k: v for k, v in os.environ.items() if k != "SYNTHGEN_TRAIN_THREADS"}
    env["SYNTHGEN_DATA_DIR"] = str(tmp_path)
    if threads is not None:
        env["SYNTHGEN_TRAIN_THREADS"] = threads
    argv = [sys.executable, "-c", SCRIPT, *([] if busy is None else [str(busy)])]
    result = subprocess.run(argv, capture_output=True, text=True,
                            timeout=120, env=env, check=True)
    return result.stdout.split()[-2:]


def test_execute_job_sets_the_threads_of_the_setting(tmp_path: Path) -> None:
    assert run_job_process(tmp_path, "3") == ["not-claimed", "3"]


def test_the_default_is_the_librarys_policy_the_free_cores(tmp_path: Path) -> None:
    """One busy core measured (synthgen.threads._busy_cores patched in the process): the
    training process takes the other cores, as ``synthgen run`` and ``Synthesizer`` would."""
    from synthgen.threads import usable_cores

    expected = max(1, usable_cores() - 1)
    assert run_job_process(tmp_path, None, busy=1.0) == ["not-claimed", str(expected)]
    assert run_job_process(tmp_path, None, busy=0.0) == ["not-claimed", str(usable_cores())]
