"""``synthgen remote ...``: talk to a synthgen server (SYNTHGEN_URL, SYNTHGEN_API_KEY).

Exit codes a cron script can trust (also in docs/service.md):

    0  success (``wait``: the job succeeded; ``batches wait``: every job succeeded)
    1  the job failed (``wait``); a job of the batch did not succeed (``batches wait``)
    2  usage: bad arguments, or no server URL / API key
    3  the job was cancelled (``wait``)
    4  timeout: ``--timeout`` passed before the job ended (it goes on)
    5  the server answered an error (its problem+json is printed on stderr)
    6  the server could not be reached
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from synthgen.cli._common import EXIT_USAGE as EXIT_USAGE
from synthgen.cli._common import check_output_path, error, usage_error, warning

if TYPE_CHECKING:
    from rich.progress import Progress

    from synthgen.client import Client

EXIT_OK, EXIT_FAILED, EXIT_CANCELLED = 0, 1, 3
EXIT_TIMEOUT, EXIT_HTTP, EXIT_UNREACHABLE = 4, 5, 6
WAIT_EXITS = {"succeeded": EXIT_OK, "failed": EXIT_FAILED, "cancelled": EXIT_CANCELLED}


def _group(text: str) -> typer.Typer:
    return typer.Typer(help=text, no_args_is_help=True, rich_markup_mode=None)


remote_app = _group("Use a synthgen server (SYNTHGEN_URL, SYNTHGEN_API_KEY). Exit codes: 0 ok, "
                    "1 job failed, 2 usage, 3 cancelled, 4 timeout, 5 HTTP error, 6 server "
                    "unreachable.")
datasets_app = _group("Upload tables.")
jobs_app = _group("Submit, follow and download jobs.")
schedules_app = _group("Recurring runs.")
batches_app = _group("Several jobs at once.")
remote_app.add_typer(datasets_app, name="datasets")
remote_app.add_typer(jobs_app, name="jobs")
remote_app.add_typer(batches_app, name="batches")
remote_app.add_typer(schedules_app, name="schedules")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print the server's JSON answer.")]
TimeoutOpt = Annotated[float | None, typer.Option(help="Give up after this many seconds "
                                                  "(exit 4).")]
PollOpt = Annotated[float, typer.Option(help="Seconds between polls.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]


@remote_app.callback()
def remote(
    ctx: typer.Context,
    url: Annotated[str | None, typer.Option(envvar="SYNTHGEN_URL",
                                            help="The server, e.g. http://127.0.0.1:8000.")] = None,
    api_key: Annotated[str | None, typer.Option(envvar="SYNTHGEN_API_KEY",
                                                help="An API key (sgk_...).")] = None,
) -> None:
    ctx.obj = (url, api_key)


@contextmanager
def _client(ctx: typer.Context) -> Iterator[Client]:
    """A client for the command; API and connection errors become the documented exits."""
    import httpx

    from synthgen.client import ApiError, Client

    url, api_key = ctx.obj
    if not url or not api_key:
        usage_error("set SYNTHGEN_URL and SYNTHGEN_API_KEY (or --url and --api-key)",
                    "no-server")
    try:
        with Client(url, api_key) as client:
            yield client
    except ApiError as exc:
        error(f"HTTP {exc.status}: {exc.detail}", exc.code)
        # The whole problem on one line: what a log keeps and grep finds.
        typer.echo(json.dumps(exc.problem), err=True)
        raise typer.Exit(EXIT_HTTP) from exc
    except httpx.TransportError as exc:
        error(f"cannot reach {url}: {exc}", "unreachable")
        raise typer.Exit(EXIT_UNREACHABLE) from exc


def _note(text: str) -> None:
    """A line for the person at the terminal (stderr: stdout is for scripts)."""
    typer.echo(text, err=True)


def _out(body: Any, as_json: bool, plain: str) -> None:
    typer.echo(json.dumps(body, indent=2) if as_json else plain)


@datasets_app.command("upload")
def upload(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="CSV or Parquet.")],
    budget_epsilon: Annotated[float | None, typer.Option(help="The dataset's epsilon cap.")] = None,
    budget_policy: Annotated[str | None, typer.Option(
        help="shared (default) or fresh: what a new version does to the budget.")] = None,
    schema: Annotated[Path | None, typer.Option(exists=True, dir_okay=False,
                                                help="Public schema JSON.")] = None,
    version_of: Annotated[str | None, typer.Option(
        help="Upload FILE as a new version of this dataset id instead.")] = None,
    delimiter: Annotated[str | None, typer.Option(
        help="The CSV's delimiter (default: detected from the header line).")] = None,
    encoding: Annotated[str | None, typer.Option(
        help="The CSV's encoding (default: UTF-8, else read as Windows-1252).")] = None,
    decimal: Annotated[str | None, typer.Option(
        help="The CSV's decimal mark, . or , (default: numbers with a point).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Upload a table (or a new version of one); prints the dataset id."""
    document = json.loads(schema.read_text()) if schema else None
    csv = {"delimiter": delimiter, "encoding": encoding, "decimal": decimal}
    with _client(ctx) as client:
        if version_of:
            body = client.upload_version(version_of, file, schema=document, **csv)
        else:
            body = client.upload_dataset(file, budget_epsilon=budget_epsilon,
                                         budget_policy=budget_policy, schema=document, **csv)
    _note(f"dataset {body['id']} version {body.get('version', 1)}: {body['rows']} rows, "
              f"{body['column_count']} columns")
    _out(body, as_json, body["id"])


@jobs_app.command("submit")
def submit(
    ctx: typer.Context,
    dataset_id: Annotated[str, typer.Argument(help="The dataset to learn from.")],
    epsilon: Annotated[float, typer.Option(help="The job's privacy budget.")],
    rows: Annotated[int | None, typer.Option(help="Synthetic rows (default: as many).")] = None,
    epochs: Annotated[float | None, typer.Option()] = None,
    batch_size: Annotated[int | None, typer.Option()] = None,
    seed: Annotated[int | None, typer.Option()] = None,
    delta: Annotated[float | None, typer.Option()] = None,
    idempotency_key: Annotated[str | None, typer.Option(
        help="A retry with the same key returns the first job instead of a new one.")] = None,
    where: Annotated[list[str] | None, typer.Option(
        "--where", help="As synthgen sample --where: COLUMN=VALUE or COLUMN>=NUMBER.")] = None,
    rebalance: Annotated[list[str] | None, typer.Option(
        "--rebalance", help="As synthgen sample --rebalance: COLUMN=VALUE:SHARE.")] = None,
    seed_rows: Annotated[Path | None, typer.Option(
        "--seed-rows", help="As synthgen sample --seed-rows: a CSV of partial rows, sent "
        "with the job and deleted by the server when the job ends.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Submit a job; prints its id."""
    from synthgen.cli._common import fail
    from synthgen.errors import SynthgenError
    from synthgen.io import read_table
    from synthgen.models.conditions import from_options

    try:
        conditions, shares = from_options(where, rebalance)
        seeds = None
        if seed_rows is not None:  # JSON records: null for empty cells, ISO dates
            seeds = json.loads(read_table(seed_rows, min_rows=1).to_json(orient="records",
                                                                        date_format="iso"))
    except SynthgenError as exc:
        raise fail(exc) from exc
    with _client(ctx) as client:
        job = client.submit_job(dataset_id, epsilon, idempotency_key=idempotency_key,
                                rows=rows, epochs=epochs, batch_size=batch_size, seed=seed,
                                delta=delta, conditions=conditions, rebalance=shares,
                                seed_rows=seeds)
    _out(job, as_json, job["id"])


@jobs_app.command("status")
def status(ctx: typer.Context, job_id: str, as_json: JsonOpt = False) -> None:
    """Print a job's status (exit 0 whatever it is; wait maps it to an exit code)."""
    with _client(ctx) as client:
        job = client.get_job(job_id)
    progress = job["progress"]
    _out(job, as_json, f"{job['status']} step {progress['step']}/{progress['total_steps'] or '?'}"
         f" epsilon {progress['epsilon_spent']:.3g}/{job['epsilon']:g}")


def _bar(quiet: bool, *fields: str) -> Progress:
    """A progress bar on stderr (Rich, imported here: only the wait commands draw one)."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    *(TextColumn(f"{{task.fields[{f}]}}") for f in fields), TimeElapsedColumn(),
                    console=Console(stderr=True), disable=quiet)


def _progress_bar(quiet: bool) -> tuple[Progress, Callable[[dict[str, Any]], None]]:
    bar = _bar(quiet, "eps")
    task = bar.add_task("queued", total=None, eps="")

    def update(job: dict[str, Any]) -> None:
        p = job["progress"]
        bar.update(task, description=job["status"], total=p["total_steps"],
                   completed=p["step"], eps=f"epsilon {p['epsilon_spent']:.3g}/{job['epsilon']:g}")

    return bar, update


def _wait(ctx: typer.Context, bar: Progress,
          wait: Callable[[Client], dict[str, Any]]) -> dict[str, Any]:
    """``wait(client)``'s answer, with the bar drawn meanwhile; a timeout exits 4."""
    from synthgen.client import WaitTimeout

    with _client(ctx) as client, bar:
        try:
            return wait(client)
        except WaitTimeout as exc:
            _note(f"timeout: {exc}")
            raise typer.Exit(EXIT_TIMEOUT) from exc


@jobs_app.command("wait")
def wait(
    ctx: typer.Context,
    job_id: str,
    timeout: TimeoutOpt = None,
    poll: PollOpt = 2.0,
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Wait for a job to end, showing its progress; the exit code says how it ended."""
    import warnings

    from synthgen.errors import SynthgenWarning

    bar, update = _progress_bar(quiet)
    with warnings.catch_warnings():  # printed below as one line each, as `synthgen run` does
        warnings.simplefilter("ignore", SynthgenWarning)
        job = _wait(ctx, bar, lambda client: client.wait_job(
            job_id, timeout=timeout, poll_s=poll, on_update=update))
    for record in job.get("warnings") or []:  # what training decided about the data
        warning(record["message"])
    if job.get("error"):
        error(f"job {job['status']}: {job['error']['message']}", job["error"]["code"])
    _out(job, as_json, job["status"])
    raise typer.Exit(WAIT_EXITS[job["status"]])


@jobs_app.command("download")
def download(
    ctx: typer.Context,
    job_id: str,
    out: Annotated[Path, typer.Option("--out", "-o", help="Synthetic CSV to write.")] = Path(
        "synthetic.csv"),
    report: Annotated[Path | None, typer.Option(help="Also write the privacy report (JSON) "
                                                "here.")] = None,
) -> None:
    """Download a succeeded job's synthetic CSV (and its report)."""
    check_output_path("--out", out)
    if report is not None:
        check_output_path("--report", report)
    with _client(ctx) as client:
        client.download_synthetic(job_id, out)
        if report is not None:
            report.write_text(json.dumps(client.get_report(job_id), indent=2))
    _note(f"wrote {out}" + (f" and {report}" if report else ""))


@batches_app.command("submit")
def submit_batch(
    ctx: typer.Context,
    jobs: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help='JSON: a list of '
                                         'job bodies, or {"jobs": [...]}.')],
    as_json: JsonOpt = False,
) -> None:
    """Submit a batch (budget reserved for all its jobs or none); prints its id."""
    document = json.loads(jobs.read_text())
    with _client(ctx) as client:
        batch = client.submit_batch(document["jobs"] if isinstance(document, dict) else document)
    _out(batch, as_json, batch["id"])


@batches_app.command("wait")
def wait_batch(
    ctx: typer.Context,
    batch_id: str,
    timeout: TimeoutOpt = None,
    poll: PollOpt = 2.0,
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Wait for a batch to end: exit 0 if every job succeeded, 1 if any did not."""
    bar = _bar(quiet)
    task = bar.add_task("queued", total=None)

    def update(batch: dict[str, Any]) -> None:
        counts = batch["counts"]
        bar.update(task, description=batch["status"], total=counts["total"],
                   completed=counts["total"] - counts["queued"] - counts["running"])

    batch = _wait(ctx, bar, lambda client: client.wait_batch(batch_id, timeout=timeout,
                                                             poll_s=poll, on_update=update))
    _out(batch, as_json, batch["status"])
    raise typer.Exit(EXIT_OK if batch["status"] == "succeeded" else EXIT_FAILED)


@batches_app.command("download")
def download_batch(
    ctx: typer.Context,
    batch_id: str,
    out: Annotated[Path, typer.Option("--out", "-o", help="Zip to write.")] = Path("batch.zip"),
) -> None:
    """Download a finished batch's zip (synthetic CSVs, reports, manifest)."""
    check_output_path("--out", out)
    with _client(ctx) as client:
        client.download_batch(batch_id, out)
    _note(f"wrote {out}")


@schedules_app.command("create")
def create_schedule(
    ctx: typer.Context,
    cron: Annotated[str, typer.Option(help="5-field cron expression, e.g. '0 2 * * *'.")],
    timezone: Annotated[str, typer.Option(help="IANA time zone of the expression.")] = "UTC",
    dataset: Annotated[str | None, typer.Option(help="Dataset id of a one-job template.")] = None,
    epsilon: Annotated[float | None, typer.Option(help="Epsilon of that job.")] = None,
    rows: Annotated[int | None, typer.Option()] = None,
    epochs: Annotated[float | None, typer.Option()] = None,
    template: Annotated[Path | None, typer.Option(
        exists=True, dir_okay=False, help='JSON: {"job": {...}} or {"batch": {"jobs": [...]}}.'
    )] = None,
    name: Annotated[str | None, typer.Option()] = None,
    disabled: Annotated[bool, typer.Option(help="Create it switched off.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Create a schedule from --dataset/--epsilon, or from a --template file; prints its id."""
    if template is not None:
        document = json.loads(template.read_text())
        job, batch = document.get("job"), (document.get("batch") or {}).get("jobs")
    elif dataset and epsilon:
        job = {k: v for k, v in (("dataset_id", dataset), ("epsilon", epsilon), ("rows", rows),
                                 ("epochs", epochs)) if v is not None}
        batch = None
    else:
        usage_error("give --dataset and --epsilon, or --template")
    with _client(ctx) as client:
        schedule = client.create_schedule(cron, timezone=timezone, job=job, batch=batch,
                                          name=name, enabled=not disabled)
    _note(f"schedule {schedule['id']}: next run {schedule['next_fire_at']}")
    _out(schedule, as_json, schedule["id"])


@schedules_app.command("list")
def list_schedules(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """List the schedules: id, cron, time zone, on/off, next run, last run's status."""
    with _client(ctx) as client:
        items = client.list_schedules()
    if as_json:
        _out(items, True, "")
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("id", "name", "cron", "timezone", "enabled", "next run", "last run")
    for s in items:
        last = s["recent_runs"][0] if s["recent_runs"] else None
        table.add_row(s["id"], s["name"] or "", s["cron"], s["timezone"], str(s["enabled"]),
                      s["next_fire_at"] or "-",
                      f"{last['fire_time']} {last['status']}" if last else "-")
    Console().print(table)
