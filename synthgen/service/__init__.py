"""The job service's core: settings, database, storage, budget and the job lifecycle.

No web framework and no queue here: ``api/`` (FastAPI) and ``workers/`` (Celery and the embedded
supervisor) build on these modules.
"""

from synthgen.service.db import Database
from synthgen.service.settings import Settings
from synthgen.service.storage import Storage

__all__ = ["Database", "Settings", "Storage"]
