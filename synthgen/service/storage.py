"""Object storage over fsspec: a local folder by default, S3 (or any fsspec URL) in a cluster.

Keys are built here from ids the service made, never from user input, and start with the tenant.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

from synthgen.errors import InputError


class UploadTooLarge(InputError):
    code = "too-large"


class Storage:
    def __init__(self, url: str) -> None:
        self.url = url
        # Other processes (workers, the reconciler) write objects this one reads: a cached
        # listing of an S3 prefix would hide a report or checkpoint written since.
        options = {"use_listings_cache": False} if url.startswith(("s3://", "s3a://")) else {}
        self.fs, root = fsspec.core.url_to_fs(url, **options)
        self.root = root.rstrip("/")
        if isinstance(self.fs, LocalFileSystem):
            self.fs.makedirs(self.root, exist_ok=True)

    @staticmethod
    def dataset_key(tenant_id: str, dataset_id: str) -> str:
        return f"tenants/{tenant_id}/datasets/{dataset_id}/upload"

    @staticmethod
    def job_key(tenant_id: str, job_id: str, name: str) -> str:
        return f"tenants/{tenant_id}/jobs/{job_id}/{name}"

    @staticmethod
    def attempt_key(tenant_id: str, job_id: str, attempt: int, name: str) -> str:
        """Where one attempt writes its outputs: two attempts of a job (a zombie and its
        successor) never write the same object; the job serves the attempt it settled with."""
        return Storage.job_key(tenant_id, job_id, f"attempts/{attempt}/{name}")

    def _path(self, key: str) -> str:
        return f"{self.root}/{key}"

    def write_stream(self, key: str, chunks: Iterable[bytes], max_bytes: int) -> tuple[int, str]:
        """Store chunks under ``key``; past ``max_bytes`` the partial object is removed and
        :class:`UploadTooLarge` raised. Returns (size, sha256 hex)."""
        path = self._path(key)
        self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        digest = hashlib.sha256()
        size = 0
        try:
            with self.fs.open(path, "wb") as out:
                for chunk in chunks:
                    size += len(chunk)
                    if size > max_bytes:
                        raise UploadTooLarge(
                            f"the upload is over the limit of {max_bytes:,} bytes; split the "
                            "table or ask the operator to raise SYNTHGEN_MAX_UPLOAD_BYTES")
                    digest.update(chunk)
                    out.write(chunk)
        except BaseException:
            self.delete(key)
            raise
        return size, digest.hexdigest()

    def check(self) -> None:
        """Raise unless the store answers: its folder, or its bucket (an S3 prefix with no
        object yet does not exist, but its bucket does)."""
        local = isinstance(self.fs, LocalFileSystem)
        self.fs.ls(self.root if local else self.root.split("/", 1)[0])

    def read_bytes(self, key: str) -> bytes:
        data: bytes = self.fs.cat_file(self._path(key))
        return data

    def open(self, key: str, mode: str = "rb", **kwargs: Any) -> IO[Any]:
        path = self._path(key)
        if "w" in mode:
            self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        handle: IO[Any] = self.fs.open(path, mode, **kwargs)
        return handle

    def exists(self, key: str) -> bool:
        return bool(self.fs.exists(self._path(key)))

    def size(self, key: str) -> int:
        return int(self.fs.size(self._path(key)))

    def delete(self, key: str) -> None:
        path = self._path(key)
        if self.fs.exists(path):
            self.fs.rm(path)

    def put_file(self, local: Path, key: str) -> None:
        """Copy a local file to ``key``, all or nothing: a worker killed mid-copy must not
        leave a torn object (a torn checkpoint would fail the job's resume). An S3 PUT is
        atomic by itself; on a local folder the copy goes to a temporary name, then renamed."""
        if not isinstance(self.fs, LocalFileSystem):
            with open(local, "rb") as src, self.open(key, "wb") as dst:
                shutil.copyfileobj(src, dst, 1024 * 1024)
            return
        part = f"{key}.part"
        with open(local, "rb") as src, self.open(part, "wb") as dst:
            shutil.copyfileobj(src, dst, 1024 * 1024)
        Path(self._path(part)).replace(self._path(key))

    def get_file(self, key: str, local: Path) -> bool:
        """Copy an object to a local file; False when there is no such object."""
        if not self.exists(key):
            return False
        local.parent.mkdir(parents=True, exist_ok=True)
        tmp = local.with_suffix(local.suffix + ".part")
        with self.open(key, "rb") as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst, 1024 * 1024)
        tmp.replace(local)
        return True
