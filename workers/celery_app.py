"""The Celery application of the cluster engine (broker: Redis, ``SYNTHGEN_BROKER_URL``).

Celery only delivers job ids; the database decides who runs what (see
:mod:`synthgen.service.jobs`). The settings below are the ones a long GPU task needs; see
docs/service.md, "Cluster engine", for why each is set.
"""

from __future__ import annotations

from celery import Celery

from synthgen.service.settings import Settings

TRAIN_TASK = "synthgen.train"
RECONCILE_TASK = "synthgen.reconcile"
SCHEDULE_TICK_TASK = "synthgen.schedule_tick"
WEBHOOKS_TASK = "synthgen.deliver_webhooks"
GPU_QUEUE = "gpu"
CONTROL_QUEUE = "control"


def make_celery(settings: Settings) -> Celery:
    if not settings.broker_url:
        raise ValueError("SYNTHGEN_BROKER_URL is not set: the cluster engine needs a broker")
    app = Celery("synthgen", broker=settings.broker_url, include=["workers.tasks"])
    visibility = settings.visibility_timeout  # above the hard time limit: no redelivery of a
    transport = {"visibility_timeout": visibility}  # task that is still running
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,  # a killed child re-queues; the DB caps attempts
        worker_prefetch_multiplier=1,
        worker_concurrency=1,  # one training process per GPU (one worker per GPU)
        worker_max_tasks_per_child=1,  # a fresh process (and CUDA context) per job
        # A broker blip (Redis restarted) must not kill running training: the database, not
        # the message, says who runs a job (lease + heartbeat), and the message that can no
        # longer be acknowledged finds nothing to claim if Redis hands it out again.
        worker_cancel_long_running_tasks_on_connection_loss=False,
        worker_soft_shutdown_timeout=30.0,
        task_soft_time_limit=settings.task_soft_time_limit_s,
        task_time_limit=settings.task_time_limit_s,
        broker_transport_options=transport,
        result_backend_transport_options=transport,
        visibility_timeout=visibility,
        broker_connection_retry_on_startup=True,
        task_ignore_result=True,  # the jobs table holds every result
        task_default_queue=CONTROL_QUEUE,
        task_routes={TRAIN_TASK: {"queue": GPU_QUEUE}, RECONCILE_TASK: {"queue": CONTROL_QUEUE},
                     SCHEDULE_TICK_TASK: {"queue": CONTROL_QUEUE},
                     WEBHOOKS_TASK: {"queue": CONTROL_QUEUE}},
        # Short control tasks. A tick or a delivery pass that runs twice (two beats, a late
        # message) is harmless: runs are keyed by (schedule, fire time), deliveries leased.
        beat_schedule={
            "reconcile-leases": {"task": RECONCILE_TASK, "schedule": settings.reconcile_every_s},
            "schedule-tick": {"task": SCHEDULE_TICK_TASK, "schedule": settings.schedule_tick_s,
                              "options": {"expires": settings.schedule_tick_s}},
            "deliver-webhooks": {"task": WEBHOOKS_TASK, "schedule": settings.webhook_every_s,
                                 "options": {"expires": settings.webhook_every_s * 5}},
        },
        worker_hijack_root_logger=False,
    )
    return app


_settings = Settings()
# Without a broker (embedded engine) the tasks still import; nothing sends them.
app = make_celery(_settings) if _settings.broker_url else Celery("synthgen")
