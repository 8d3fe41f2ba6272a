"""A retry must not release twice (issue 22, item 4). The choice: an attempt publishes nothing
(progress, its ledger so far) before its releases are checkpointed in storage. The library
writes a checkpoint before training starts; the worker copies it to storage before the first
progress write. An attempt killed before that published nothing, so its retry measuring again
is a first release; an attempt killed after it is resumed from the checkpointed releases."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from service.svc_helpers import ADULT_SAMPLE, add_dataset, unit_database
from synthgen.privacy import PrivacyLedger
from synthgen.service import runner
from synthgen.service.budget import admit_job
from synthgen.service.db import Job
from synthgen.service.jobs import checkpoint_key
from synthgen.service.settings import Settings
from synthgen.service.storage import Storage


def test_the_library_checkpoints_its_releases_before_the_first_progress(tmp_path: Path) -> None:
    import pandas as pd
    import torch

    from synthgen import Synthesizer
    from synthgen.models.trainer import load_state

    torch.set_num_threads(1)
    table = pd.read_csv(ADULT_SAMPLE).head(300)
    ckpt = tmp_path / "ckpt.pt"
    seen: list[Any] = []

    def on_progress(p: Any) -> None:
        if not seen:  # the first thing published: the releases are on disk already
            assert ckpt.exists()
            seen.append(load_state(ckpt).extra)

    synth = Synthesizer(epsilon=1.0, epochs=1, batch_size=100, seed=3)
    synth.fit(table, on_progress=on_progress, checkpoint_path=ckpt)
    assert seen, "no progress was reported"
    saved = PrivacyLedger.from_dict(seen[0]["ledger"])
    assert synth.ledger is not None
    # the checkpoint holds every release before DP-SGD, as the finished fit has them
    assert [e.mechanism for e in saved.entries] == [e.mechanism for e in synth.ledger.entries]
    assert saved.history()[:-1] == synth.ledger.history()[:-1]
    assert seen[0]["domains"] == [d.to_dict() for d in synth.domains]


def test_a_worker_publishes_no_progress_before_its_releases_are_in_storage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # no heartbeat (nor its copy of the checkpoint) during the run: only the gate copies it
    settings = Settings(data_dir=tmp_path, checkpoint_every_s=3600, lease_s=3600)
    db = unit_database(tmp_path / "synthgen.db")
    add_dataset(db, "ds1", cap=5.0)
    storage = Storage(settings.objects_url)
    with storage.open("k/ds1", "wb") as fh:
        fh.write(ADULT_SAMPLE.read_bytes())
    job = admit_job(db, "t1", "ds1", epsilon=1.0, options={"epochs": 1, "batch_size": 100,
                                                           "audit": False}, max_attempts=2)
    assert job is not None
    key = checkpoint_key(job)
    published: list[bool] = []
    real = runner.record_progress

    def record_progress(*args: Any, **kwargs: Any) -> bool:
        published.append(storage.exists(key))  # at the moment of each progress write
        return real(*args, **kwargs)

    monkeypatch.setattr(runner, "record_progress", record_progress)
    assert runner.execute_job(job.id, "worker-a", settings) == "succeeded"
    assert published and all(published), published
    with db.read() as s:
        done = s.scalars(select(Job).where(Job.id == job.id)).one()
    assert done.progress_step == done.ledger["history"][-1][2] > 0
