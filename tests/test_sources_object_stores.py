"""Object stores other than S3 (tests/test_sources.py has S3 on moto's server): the fsspec path
is one generic path, so the same round trip runs on every store here.

- ``memory://`` (fsspec's own, always here): the generic path with no package at all.
- ``gs://`` through gcsfs against gcp-storage-emulator (both in the dev extra), started in this
  process on a free port: run by CI.
- ``abfs://`` through adlfs against Azurite (``azurite-blob``, an npm package), started on a
  free port when both are installed. Not in the dev extra: adlfs needs azure-identity, whose
  msal pins cryptography below the runtime's release (pip downgrades it, or backtracks to a
  2020 azure-identity), and Azurite is 360 MB of node modules. Its skip is an allowed one
  (conftest's ALLOWED_SKIPS, "Azurite"); run by hand with ``pip install --target DIR adlfs``,
  ``npm install azurite`` and DIR appended to ``sys.path``, ``node_modules/.bin`` in PATH.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from synthgen.errors import InputError
from synthgen.io import ReadLimits, TableTooLarge
from synthgen.sources import read_source, write_path

# Azurite's well-known development account (public, in Microsoft's documentation)
AZURITE_KEY = ("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/"
               "KBHBeksoGMGw==")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def table() -> pd.DataFrame:
    return pd.DataFrame({"age": [20 + i % 50 for i in range(120)],
                         "city": [None if i % 7 == 0 else ("Lyon", "Nice")[i % 2]
                                  for i in range(120)],
                         "amount": [i * 1.5 for i in range(120)]})


def round_trip(root: str) -> None:
    """A folder of CSV parts in, one Parquet file and a folder of Parquet parts out, the
    limits, a missing file: what ``synthgen run URL -o URL`` does with a store."""
    people = table()
    assert write_path([people.iloc[:50]], f"{root}/in/part-1.csv") == 50
    assert write_path([people.iloc[50:]], f"{root}/in/part-2.csv") == 70
    folder = read_source(f"{root}/in/")
    assert folder.frame.shape == (120, 3) and folder.schema is None
    assert folder.frame["city"].isna().sum() == people["city"].isna().sum()
    with pytest.raises(TableTooLarge):
        read_source(f"{root}/in/", limits=ReadLimits(max_rows=100))
    with pytest.raises(InputError, match="does not exist"):
        read_source(f"{root}/nothing.csv")

    assert write_path([people.iloc[:60], people.iloc[60:]], f"{root}/out/s.parquet") == 120
    back = read_source(f"{root}/out/s.parquet").frame
    assert back.shape == (120, 3) and back["amount"].sum() == people["amount"].sum()
    assert write_path([people.iloc[:60], people.iloc[60:]], f"{root}/parts/") == 120
    parts = read_source(f"{root}/parts/").frame
    assert len(parts) == 120 and list(parts.columns) == ["age", "city", "amount"]


def test_a_generic_fsspec_store_round_trips() -> None:
    round_trip(f"memory://synthgen-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def gcs(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    import fsspec

    gcsfs = pytest.importorskip("gcsfs", reason="gcsfs is not installed (the dev extra)")
    emulator = pytest.importorskip("gcp_storage_emulator.server",
                                   reason="gcp-storage-emulator is not installed (the dev extra)")
    bucket, port = f"b{uuid.uuid4().hex[:10]}", _free_port()
    server = emulator.create_server("127.0.0.1", port, in_memory=True, default_bucket=bucket)
    server.start()
    # gcsfs's default class asks the storage-control gRPC API for the bucket's type, which
    # the emulator does not serve (a 60 s timeout per bucket): its plain JSON-API class
    monkeypatch.setitem(sys.modules["fsspec.registry"]._registry, "gs",
                        gcsfs.core.GCSFileSystem)
    monkeypatch.setitem(fsspec.config.conf, "gs", {
        "endpoint_url": f"http://127.0.0.1:{port}", "token": "anon", "project": "test",
        "skip_instance_cache": True})
    yield f"gs://{bucket}"
    server.stop()


def test_gcs_round_trips_through_gcsfs(gcs: str) -> None:
    round_trip(gcs)


@pytest.fixture
def azure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    import fsspec

    binary = shutil.which("azurite-blob")
    try:
        import adlfs
    except ImportError:
        adlfs = None
    if adlfs is None or binary is None:
        pytest.skip("Azurite (azurite-blob) or adlfs is not installed: abfs:// untested here "
                    "(see this module's docstring)")
    port = _free_port()
    log = tmp_path / "azurite.log"
    proc = subprocess.Popen([binary, "--blobHost", "127.0.0.1", "--blobPort", str(port),
                             "--inMemoryPersistence", "--skipApiVersionCheck"],
                            stdout=log.open("wb"), stderr=subprocess.STDOUT)
    connection = (f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
                  f"AccountKey={AZURITE_KEY};"
                  f"BlobEndpoint=http://127.0.0.1:{port}/devstoreaccount1;")
    container = f"c{uuid.uuid4().hex[:10]}"
    try:
        deadline = time.monotonic() + 120
        while True:  # listening (adlfs's mkdir would not say it failed)
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"Azurite did not start: {log.read_text()}") from None
                time.sleep(0.3)
        fs = adlfs.AzureBlobFileSystem(connection_string=connection, skip_instance_cache=True)
        fs.mkdir(container)
        monkeypatch.setitem(fsspec.config.conf, "abfs", {
            "connection_string": connection, "skip_instance_cache": True})
        monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", connection)
        yield f"abfs://{container}"
    finally:
        proc.kill()
        proc.wait(timeout=30)


def test_azure_blob_round_trips_through_adlfs(azure: str) -> None:
    round_trip(azure)


def test_a_store_without_its_package_says_which_to_install(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # fsspec's error names the package to install; the message keeps it, and no secret
    monkeypatch.delitem(sys.modules["fsspec.registry"]._registry, "gs", raising=False)
    monkeypatch.setitem(sys.modules, "gcsfs", None)  # as if not installed
    with pytest.raises(InputError, match="install gcsfs") as refused:
        read_source("gs://bucket/customers.csv?token=t0ps3cret")
    assert "t0ps3cret" not in str(refused.value)
