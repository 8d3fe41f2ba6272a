"""The interface between the API and job execution; engines live in ``workers/``.

``submit`` is called after the job row is committed; it must be cheap and may be called more
than once for a job (the claim makes duplicates harmless).
"""

from __future__ import annotations

from typing import Protocol


class JobDispatcher(Protocol):
    engine: str

    def start(self) -> None: ...

    def submit(self, job_id: str) -> None: ...

    def stop(self) -> None: ...

    def ready(self) -> bool: ...
