"""The S3 path for real: an S3-compatible server (moto's, started here on a free port) holds
uploads, outputs and checkpoints of a service whose training child is killed mid-run."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.svc_helpers import (
    LONG_JOB,
    Api,
    S3Server,
    Service,
    assert_resumed_once,
    training_child,
)


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    server = S3Server(tmp_path_factory.mktemp("s3"))
    server.start()
    yield server
    server.stop()


def test_uploads_checkpoints_outputs_and_retention_on_s3(s3: S3Server, tmp_path: Path) -> None:
    service = Service(tmp_path / "svc", {**s3.env, "SYNTHGEN_RETAIN_UPLOADS": "false",
                                         "SYNTHGEN_STORAGE_URL": f"s3://{s3.bucket}/objects"})
    try:
        service.start_api()
        api = Api(service.url, service.key("s3-team"))
        dataset = api.upload()
        upload_key = f"tenants/{dataset['id']}"
        assert any(k.endswith(f"datasets/{dataset['id']}/upload") for k in s3.keys("objects"))
        job = api.submit(dataset["id"], **LONG_JOB)
        checkpoint = f"jobs/{job['id']}/checkpoint.pt"
        api.wait(job["id"], lambda j: any(k.endswith(checkpoint) for k in s3.keys("objects")))
        child = training_child(service)
        assert child is not None
        os.kill(child, signal.SIGKILL)  # the next attempt resumes from the checkpoint on S3

        assert_resumed_once(service, api, job, dataset)
        stored = s3.keys("objects")
        for name in ("synthetic.csv", "report.json", "evaluation.json", "model.zip"):
            # under the key of the attempt that settled (the second: the first was killed)
            assert any(k.endswith(f"jobs/{job['id']}/attempts/2/{name}") for k in stored), stored
        assert not any(k.endswith(checkpoint) for k in stored)  # removed once the job ended
        assert not any(upload_key in k or k.endswith(f"{dataset['id']}/upload")
                       for k in stored)  # the raw upload, by the retention policy
        csv = api.http.get(f"/v1/jobs/{job['id']}/synthetic.csv")
        assert csv.status_code == 200
        assert abs(csv.text.count("\n") - 401) < 120  # DP row count
        assert not any(service.data_dir.joinpath("objects").rglob("*"))  # nothing local
    finally:
        service.stop()
