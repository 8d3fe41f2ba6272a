"""Training scratch folders (``<data dir>/scratch/<job id>-<attempt>``) of attempts that died.

A worker killed mid-job never reaches its own clean-up, so every process that trains sweeps
before it claims: a folder whose job has ended, is not running, or runs a later attempt belongs
to a dead attempt. The attempt that holds the lease keeps its folder.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from sqlalchemy import select

from synthgen.service.db import Database, Job

log = logging.getLogger("synthgen.service")


def sweep_scratch(db: Database, scratch_dir: Path) -> list[str]:
    """Remove the folders of attempts that are not running any more; returns their names."""
    if not scratch_dir.is_dir():
        return []
    folders = {p.name: p for p in scratch_dir.iterdir() if p.is_dir() and "-" in p.name}
    if not folders:
        return []
    wanted = {name.rsplit("-", 1)[0] for name in folders}
    with db.read() as s:
        live = {f"{job_id}-{attempt}" for job_id, attempt in s.execute(
            select(Job.id, Job.attempt).where(Job.id.in_(wanted), Job.state == "running"))}
    removed = []
    for name, path in folders.items():
        if name not in live:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(name)
    if removed:
        log.info("removed %d scratch folder(s) of ended attempts", len(removed))
    return removed
