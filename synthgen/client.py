"""A small typed client of the synthgen REST API (httpx).

>>> from synthgen.client import Client
>>> with Client("http://127.0.0.1:8000", "sgk_...") as api:          # doctest: +SKIP
...     dataset = api.upload_dataset("people.csv")
...     job = api.wait_job(api.submit_job(dataset["id"], epsilon=1)["id"])
...     api.download_synthetic(job["id"], "synthetic.csv")

Every method mirrors one route and returns its JSON body; an error answer raises
:class:`ApiError`, which carries the RFC 9457 problem (``code`` is stable). ``Client()`` reads
``SYNTHGEN_URL`` and ``SYNTHGEN_API_KEY`` when no URL or key is given.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from synthgen.errors import SynthgenWarning
from synthgen.signing import InvalidSignature, verify

__all__ = ["ApiError", "Client", "InvalidSignature", "WaitTimeout", "verify_webhook"]

JSON = dict[str, Any]
JOB_END = ("succeeded", "failed", "cancelled")
BATCH_END = ("succeeded", "partially_failed", "failed")


class ApiError(Exception):
    """The server answered an error: ``status``, and the problem's ``code`` and ``detail``."""

    def __init__(self, status: int, problem: JSON) -> None:
        self.status = status
        self.problem = problem
        self.code = str(problem.get("code", "http-error"))
        self.detail = str(problem.get("detail", ""))
        super().__init__(f"{status} {self.code}: {self.detail}")


class WaitTimeout(Exception):
    """A wait gave up before the job or batch ended; ``last`` is what was seen last."""

    def __init__(self, what: str, last: JSON) -> None:
        super().__init__(f"{what} {last.get('id')} is still {last.get('status')}")
        self.last = last


def verify_webhook(secret: str, headers: Mapping[str, str], body: bytes) -> JSON:
    """Check a webhook delivery's signature and age; return its event (raise
    :class:`InvalidSignature`). Dedupe on ``headers['webhook-id']``: a retry repeats it."""
    verify(secret, {k.lower(): v for k, v in headers.items()}, body)
    event: JSON = json.loads(body)
    return event


class Client:
    def __init__(self, url: str | None = None, api_key: str | None = None, *,
                 timeout: float = 60.0, transport: httpx.BaseTransport | None = None) -> None:
        url = url or os.environ.get("SYNTHGEN_URL")
        api_key = api_key or os.environ.get("SYNTHGEN_API_KEY")
        if not url or not api_key:
            raise ValueError("give the server's URL and an API key (or set SYNTHGEN_URL and "
                             "SYNTHGEN_API_KEY)")
        # A plain-HTTP server has no certificate to check, and the default TLS context costs
        # 0.1 s (it loads the CA bundle), a sixth of a `synthgen remote` call. The client only
        # sends paths under this base URL and follows no redirect, so no request of it can
        # reach an https:// URL; an https:// base URL keeps full verification.
        plain = httpx.URL(url).scheme == "http"
        self.http = httpx.Client(base_url=url.rstrip("/"), timeout=timeout, transport=transport,
                                 headers={"Authorization": f"Bearer {api_key}"},
                                 verify=not plain, follow_redirects=False)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: tuple[type[BaseException], BaseException, TracebackType]) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    # --- plumbing -------------------------------------------------------------------------

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = self.http.request(method, path, **kwargs)
        if response.status_code >= 400:
            self._raise(response)
        return response

    def _json(self, method: str, path: str, **kwargs: Any) -> JSON:
        body: JSON = self._request(method, path, **kwargs).json()
        return body

    def _download(self, path: str, dest: str | Path) -> Path:
        dest = Path(dest)
        with self.http.stream("GET", path) as response:
            if response.status_code >= 400:
                response.read()
                self._raise(response)
            tmp = dest.with_name(dest.name + ".part")
            with open(tmp, "wb") as out:
                for chunk in response.iter_bytes(256 * 1024):
                    out.write(chunk)
        tmp.replace(dest)
        return dest

    @staticmethod
    def _raise(response: httpx.Response) -> None:
        try:
            problem = response.json()
        except ValueError:
            problem = {"detail": response.text[:500]}
        raise ApiError(response.status_code,
                       problem if isinstance(problem, dict) else {"detail": str(problem)})

    def _wait(self, get: Callable[[], JSON], ended: tuple[str, ...], what: str,
              timeout: float | None, poll_s: float,
              on_update: Callable[[JSON], None] | None) -> JSON:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            current = get()
            if on_update is not None:
                on_update(current)
            if current["status"] in ended:
                return current
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout(what, current)
            time.sleep(poll_s if deadline is None else
                       max(0.0, min(poll_s, deadline - time.monotonic())))

    # --- datasets -------------------------------------------------------------------------

    def upload_dataset(self, path: str | Path, *, budget_epsilon: float | None = None,
                       budget_policy: str | None = None, schema: JSON | None = None,
                       delimiter: str | None = None, encoding: str | None = None,
                       decimal: str | None = None) -> JSON:
        """Upload a table; ``delimiter``, ``encoding`` and ``decimal`` tell how to read a CSV
        (default: detected, see the README)."""
        form = {k: str(v) for k, v in (("budget_epsilon", budget_epsilon),
                                       ("budget_policy", budget_policy), ("delimiter", delimiter),
                                       ("encoding", encoding), ("decimal", decimal))
                if v is not None}
        if schema is not None:
            form["schema"] = json.dumps(schema)
        with open(path, "rb") as fh:
            return self._json("POST", "/v1/datasets", data=form,
                              files={"file": (Path(path).name, fh)})

    def upload_version(self, dataset_id: str, path: str | Path, *,
                       schema: JSON | None = None, delimiter: str | None = None,
                       encoding: str | None = None, decimal: str | None = None) -> JSON:
        form = {k: v for k, v in (("delimiter", delimiter), ("encoding", encoding),
                                  ("decimal", decimal)) if v is not None}
        if schema is not None:
            form["schema"] = json.dumps(schema)
        with open(path, "rb") as fh:
            return self._json("PUT", f"/v1/datasets/{dataset_id}/versions", data=form,
                              files={"file": (Path(path).name, fh)})

    def get_dataset(self, dataset_id: str) -> JSON:
        return self._json("GET", f"/v1/datasets/{dataset_id}")

    def get_budget(self, dataset_id: str) -> JSON:
        return self._json("GET", f"/v1/datasets/{dataset_id}/budget")

    # --- jobs -----------------------------------------------------------------------------

    def submit_job(self, dataset_id: str, epsilon: float, *, idempotency_key: str | None = None,
                   **options: Any) -> JSON:
        """``options``: delta, rows, epochs, batch_size, seed, accountant, ... (POST /v1/jobs)."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        body = {"dataset_id": dataset_id, "epsilon": epsilon,
                **{k: v for k, v in options.items() if v is not None}}
        return self._json("POST", "/v1/jobs", json=body, headers=headers)

    def get_job(self, job_id: str) -> JSON:
        return self._json("GET", f"/v1/jobs/{job_id}")

    def list_jobs(self, *, status: str | None = None, limit: int = 20,
                  cursor: str | None = None) -> JSON:
        params = {k: v for k, v in (("status", status), ("limit", limit), ("cursor", cursor))
                  if v is not None}
        return self._json("GET", "/v1/jobs", params=params)

    def cancel_job(self, job_id: str) -> JSON:
        return self._json("POST", f"/v1/jobs/{job_id}/cancel")

    def wait_job(self, job_id: str, *, timeout: float | None = None, poll_s: float = 2.0,
                 on_update: Callable[[JSON], None] | None = None) -> JSON:
        """Poll until the job ends (any end: check ``status``); :class:`WaitTimeout` after
        ``timeout`` seconds. What training decided about the data (``job["warnings"]``: a
        column dropped, values folded into ``Other``) is also issued as
        :class:`~synthgen.SynthgenWarning` warnings, as ``Synthesizer.fit`` does."""
        job = self._wait(lambda: self.get_job(job_id), JOB_END, "job", timeout, poll_s,
                         on_update)
        for record in job.get("warnings") or []:
            warnings.warn(record["message"], SynthgenWarning, stacklevel=2)
        return job

    def download_synthetic(self, job_id: str, dest: str | Path) -> Path:
        return self._download(f"/v1/jobs/{job_id}/synthetic.csv", dest)

    def get_report(self, job_id: str) -> JSON:
        """The public privacy report (DP outputs only)."""
        return self._json("GET", f"/v1/jobs/{job_id}/report")

    def get_evaluation(self, job_id: str) -> JSON:
        """The owner-only evaluation (computed on the real rows): keep it to yourself."""
        return self._json("GET", f"/v1/jobs/{job_id}/evaluation")

    # --- batches --------------------------------------------------------------------------

    def submit_batch(self, jobs: list[JSON]) -> JSON:
        """``jobs``: job request bodies (``{"dataset_id", "epsilon", ...}``), all or none."""
        return self._json("POST", "/v1/batches", json={"jobs": jobs})

    def get_batch(self, batch_id: str) -> JSON:
        return self._json("GET", f"/v1/batches/{batch_id}")

    def wait_batch(self, batch_id: str, *, timeout: float | None = None, poll_s: float = 2.0,
                   on_update: Callable[[JSON], None] | None = None) -> JSON:
        return self._wait(lambda: self.get_batch(batch_id), BATCH_END, "batch", timeout, poll_s,
                          on_update)

    def download_batch(self, batch_id: str, dest: str | Path) -> Path:
        return self._download(f"/v1/batches/{batch_id}/download", dest)

    # --- schedules ------------------------------------------------------------------------

    def create_schedule(self, cron: str, *, timezone: str = "UTC", job: JSON | None = None,
                        batch: list[JSON] | None = None, name: str | None = None,
                        enabled: bool = True) -> JSON:
        body: JSON = {"cron": cron, "timezone": timezone, "enabled": enabled}
        if name is not None:
            body["name"] = name
        if job is not None:
            body["job"] = job
        if batch is not None:
            body["batch"] = {"jobs": batch}
        return self._json("POST", "/v1/schedules", json=body)

    def list_schedules(self) -> list[JSON]:
        items: list[JSON] = self._json("GET", "/v1/schedules")["items"]
        return items

    def get_schedule(self, schedule_id: str) -> JSON:
        return self._json("GET", f"/v1/schedules/{schedule_id}")

    def update_schedule(self, schedule_id: str, **changes: Any) -> JSON:
        return self._json("PATCH", f"/v1/schedules/{schedule_id}", json=changes)

    def delete_schedule(self, schedule_id: str) -> None:
        self._request("DELETE", f"/v1/schedules/{schedule_id}")

    # --- webhook --------------------------------------------------------------------------

    def set_webhook(self, url: str) -> JSON:
        """Create or replace the endpoint; the answer's ``secret`` is shown only now."""
        return self._json("PUT", "/v1/webhook", json={"url": url})

    def get_webhook(self) -> JSON:
        return self._json("GET", "/v1/webhook")

    def delete_webhook(self) -> None:
        self._request("DELETE", "/v1/webhook")
