"""Object storage writes are all or nothing (a killed worker leaves no torn checkpoint)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import IO, Any

import pytest

from synthgen.service.storage import Storage


def test_put_file_interrupted_mid_copy_keeps_the_previous_object(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = Storage((tmp_path / "objects").as_uri())
    local = tmp_path / "checkpoint.pt"
    local.write_bytes(b"first checkpoint")
    storage.put_file(local, "tenants/t/jobs/j/checkpoint.pt")
    local.write_bytes(b"second checkpoint, longer")

    def killed(src: IO[bytes], dst: IO[bytes], length: int = 0, **_: Any) -> None:
        dst.write(src.read(5))  # part of the bytes, then the process "dies"
        raise KeyboardInterrupt

    monkeypatch.setattr(shutil, "copyfileobj", killed)
    with pytest.raises(KeyboardInterrupt):
        storage.put_file(local, "tenants/t/jobs/j/checkpoint.pt")
    monkeypatch.undo()
    assert storage.read_bytes("tenants/t/jobs/j/checkpoint.pt") == b"first checkpoint"
    storage.put_file(local, "tenants/t/jobs/j/checkpoint.pt")
    assert storage.read_bytes("tenants/t/jobs/j/checkpoint.pt") == b"second checkpoint, longer"
