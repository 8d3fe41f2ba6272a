"""``synthgen run`` and ``synthgen sample``: tables and models on this machine."""

from __future__ import annotations

import re
import shlex
import sys
import time
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any

import typer

from synthgen.cli._common import check_output_path, fail, usage_error, warning
from synthgen.errors import SynthgenError
from synthgen.threads import set_threads
from synthgen.timing import StageClock, process_age

Where = Annotated[list[str] | None, typer.Option(
    "--where", help="Fix a value in every row: COLUMN=VALUE (categorical, boolean) or "
    "COLUMN>=, >, <=, <, = NUMBER or date (numeric); repeat for more. Quote values with "
    "shell characters: --where Y='>50K'.")]
Rebalance = Annotated[list[str] | None, typer.Option(
    "--rebalance", help="Set a categorical column's share of a value: COLUMN=VALUE:SHARE, "
    "e.g. Y='>50K':0.5; repeat for more values of the same column. The other rows follow "
    "the model.")]
Delimiter = Annotated[str | None, typer.Option(
    help="The CSV's delimiter: comma, semicolon, tab, pipe or one character (default: "
    "detected from the header line).")]
Encoding = Annotated[str | None, typer.Option(
    help="The CSV's encoding, e.g. utf-8, cp1252, latin-1 (default: UTF-8, with or without a "
    "byte-order mark; a file that is not UTF-8 is read as Windows-1252, with a warning).")]
Decimal = Annotated[str | None, typer.Option(
    help="The CSV's decimal mark, . or , (default: numbers are read with a point; a column "
    "written 1.234,50 needs --decimal , and the other mark separates thousands).")]
SeedRows = Annotated[Path | None, typer.Option(
    "--seed-rows", help="CSV of partial rows: each output row keeps its seed row's non-empty "
    "cells and the model fills in the rest. Your input, not training data: not covered by "
    "the privacy guarantee.")]


def run(
    input: Annotated[str, typer.Argument(
        help="Table to learn from: .csv (header row, empty cells for missing values) or "
             ".parquet; an fsspec URL (s3://bucket/path/: a file or a folder of them); or a "
             "database URL (postgresql://user@host/db, sqlite:///file.db) with --table or "
             "--query. Credentials from the URL or the driver's environment (PGPASSWORD, "
             "~/.pgpass, AWS_*); never printed.")],
    epsilon: Annotated[float, typer.Option(help="Privacy budget (total epsilon).")] = 1.0,
    out: Annotated[str | None, typer.Option(
        "--out", "-o", help="Synthetic table to write: a CSV (default synthetic.csv unless "
        "--to-sql), .parquet, or an fsspec URL (s3://...; a URL ending in / gets Parquet "
        "parts).")] = None,
    table: Annotated[str | None, typer.Option(
        help="Database source: the table to read (schema.table allowed).")] = None,
    query: Annotated[str | None, typer.Option(
        help="Database source: one read-only SELECT, run in a read-only transaction.")] = None,
    to_sql: Annotated[str | None, typer.Option(
        "--to-sql", help="Write the synthetic table to this database (URL) too.")] = None,
    to_table: Annotated[str | None, typer.Option(
        "--to-table", help="With --to-sql: the table to write (created with the source's "
        "column types).")] = None,
    if_exists: Annotated[str, typer.Option(
        "--if-exists", help="With --to-sql, when the table exists: fail, replace or append."
    )] = "fail",
    report: Annotated[Path | None, typer.Option(help="Write the public privacy-budget report "
                                                "(JSON) here and its HTML beside it, and the "
                                                "owner-only evaluation beside them "
                                                "(evaluation.json / .html).")] = None,
    rows: Annotated[int | None, typer.Option(help="Rows to generate (default: about as many as "
                                             "the input, from the DP row count).", min=1)] = None,
    delta: Annotated[float | None, typer.Option(
        help="Delta (default 1e-6; give a smaller one for tables over 100,000 rows).")] = None,
    schema: Annotated[Path | None, typer.Option(
        help="Public schema JSON (synthgen format or SDV metadata): declared facts cost no budget."
    )] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    seed: Annotated[int | None, typer.Option(help="Seed for reproducible runs: a secret like a "
                                             "key (anyone who knows it can regenerate the "
                                             "noise), never written to the report or the "
                                             "model; the same output needs the same "
                                             "--threads too. Default: fresh OS entropy.")] = None,
    epochs: Annotated[float | None, typer.Option(
        help="Training epochs (default 30; more above epsilon 3, 60 from epsilon 10).")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Expected real rows per step (default "
                                                   "n/8, at most 16,384).")] = None,
    accountant: Annotated[str, typer.Option(help="prv (tight, default) or rdp.")] = "prv",
    preprocessing_share: Annotated[float | None, typer.Option(
        help="Share of epsilon for the domain histograms (default: adapts to the table's size "
             "and width, 0.1 to 0.5; see README).")] = None,
    save_model: Annotated[Path | None,
                          typer.Option(help="Also save the model here (.zip).")] = None,
    write_schema: Annotated[Path | None, typer.Option(
        help="Write the schema this run used here (JSON, what --schema reads): kinds, "
             "released categories, ranges, codes, nullability, formats. DP outputs and "
             "declarations only: review it, correct it and give it back with --schema.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    threads: Annotated[int | None, typer.Option(
        help="CPU threads for training (default: the cores not busy now).", min=1)] = None,
    target: Annotated[str | None, typer.Option(
        help="Column to predict in the report's utility test (train on synthetic, test on the "
             "real holdout).")] = None,
    holdout_share: Annotated[float, typer.Option(
        help="With --report: share of the rows held out of training for the audit and the "
             "utility test (0: none).")] = 0.1,
    no_audit: Annotated[bool, typer.Option(
        "--no-audit", help="No empirical privacy audit in the report.")] = False,
    where: Where = None,
    rebalance: Rebalance = None,
    seed_rows: SeedRows = None,
    delimiter: Delimiter = None,
    encoding: Encoding = None,
    decimal: Decimal = None,
) -> None:
    """Train a DP GAN on INPUT and write a synthetic CSV (and a privacy report)."""
    # Before importing torch and pandas (seconds): a typo in a path answers at once.
    out = _check_destinations(input, out, to_sql, to_table)
    local_out = None if out is None or _is_url(out) else Path(out)
    _check_outputs(Path(input) if not _is_url(input) else None, out=local_out, report=report,
                   save_model=save_model, write_schema=write_schema)
    import pandas as pd

    from synthgen.errors import SynthgenWarning
    from synthgen.evaluate import keep_head, plan_evaluation
    from synthgen.evaluate.holdout import public_split
    from synthgen.evaluate.job import EVALUATION_ROWS, evaluate_job
    from synthgen.io import write_csv
    from synthgen.models.conditions import check as check_conditions
    from synthgen.models.conditions import facts_of_schema
    from synthgen.privacy.accountant import check_accountant
    from synthgen.privacy.budget import check_plan
    from synthgen.report import (
        evaluation_path,
        public_command,
        run_header,
        write_evaluation,
        write_report,
    )
    from synthgen.schema import infer_schema, load_schema
    from synthgen.schema import write_schema as write_schema_file
    from synthgen.sources import (
        check_destination,
        conform,
        mask,
        mask_words,
        merge_schemas,
        read_source,
        write_path,
        write_sql,
    )
    from synthgen.synthesizer import Synthesizer

    started = time.perf_counter()
    # wall and CPU seconds of the run's stages, for the owner-only evaluation (the fit's own
    # stages come from the library); "startup" is the interpreter and the imports before
    clock = StageClock({"startup_s": process_age(), "startup_cpu_s": time.process_time()})
    try:
        if device not in ("auto", "cpu", "cuda"):
            raise ValueError("--device must be auto, cpu or cuda")
        # the budget plan (every mechanism before DP-SGD): exit 2 before any row is read
        check_plan(epsilon, delta, check_accountant(accountant), preprocessing_share)
        if to_sql is not None and to_table is not None:  # a typo costs seconds, not a run
            check_destination(to_sql, to_table, if_exists)
        threads = set_threads(threads)  # the library's policy: the cores free now
        source = read_source(input, table=table, query=query, delimiter=delimiter,
                             encoding=encoding, decimal=decimal)
        table_in = source.frame
        # The report's audit and utility test need real rows the model never saw: split them
        # off before fit() reads anything (the report declares the split).
        plan = plan_evaluation(table_in, holdout_share=holdout_share if report else 0.0,
                               audit=not no_audit, target=target, seed=seed)
        train = plan.training_table(table_in)
        clock.lap("read")
        # the database's column types are declared facts; the user's schema goes over them
        declared = merge_schemas(source.schema, load_schema(schema) if schema else None)
        # conditions checked before training as far as the table's kinds and the public
        # schema tell; the released categories are checked before sampling
        asked = _sampling_request(where, rebalance, seed_rows)
        check_conditions(asked["conditions"], asked["rebalance"],
                         facts_of_schema(infer_schema(train, declared)))
        synth = Synthesizer(
            epsilon, delta, schema=declared, epochs=epochs, batch_size=batch_size,
            device=device, seed=seed, accountant=accountant,
            preprocessing_share=preprocessing_share, threads=threads, progress=not quiet,
        )
        with warnings.catch_warnings():
            # fit() warns through Python's warnings too; here they close the run, once.
            warnings.simplefilter("ignore", SynthgenWarning)
            synth.fit(train)  # draws the library's progress bar (on stderr) unless --quiet
        clock.lap("fit")
        if write_schema:  # as soon as it is known: a sampling error does not lose it
            write_schema_file(synth.schema_used(), write_schema)
        if rows is None and asked["seed_rows"] is None:  # the library's rule, as the service's
            rows = synth.default_rows(plan.held_out_share)
        sampled = (conform(c, source.types) for c in synth.sample_chunks(rows, **asked))
        head, kept = keep_head(sampled, EVALUATION_ROWS if report else 0)
        # both destinations: the rows are needed twice
        chunks: Iterable[Any] = list(head) if out is not None and to_sql is not None else head
        written_to = []
        if to_sql is not None and to_table is not None:
            written = write_sql(chunks, to_sql, to_table, if_exists=if_exists,
                                types=source.types, source_dialect=source.dialect)
            written_to.append(f"{to_table} in {mask(to_sql)}")
        if out is not None:
            written = (write_path(chunks, out) if _is_url(out) else write_csv(chunks, out))
            written_to.insert(0, mask(out))
        synth.info["timings"]["sampling_s"] = clock.lap("sampling")
        synth.info["timings"]["sampling_cpu_s"] = clock.timings["sampling_cpu_s"]
        if save_model:
            synth.save(save_model)
        doc = synth.report()
        doc["output_rows"] = written
        if plan.holdout is not None:  # what the guarantee covers; the split is not released
            doc["split"] = public_split(plan.holdout.share)
        # Timings are not in the public report (they grow with the exact row count): the
        # owner-only evaluation keeps them.
        timings = dict(synth.info["timings"])
        timings["total_s"] = time.perf_counter() - started
        if save_model:
            written_to.append(str(save_model))
        if write_schema:
            written_to.append(str(write_schema))
        if report:
            synthetic = pd.concat(kept, ignore_index=True) if kept else table_in.iloc[:0]
            evaluation = evaluate_job(doc, plan, train, synthetic, seed=seed)
            clock.lap("evaluation")
            timings.update({k: v for k, v in clock.timings.items() if k not in timings})
            timings["total_s"] = time.perf_counter() - started
            timings["total_cpu_s"] = time.process_time()
            evaluation["timings"] = timings
            doc["run"] = run_header(source.name, command=shlex.join(
                ["synthgen", *mask_words(public_command(sys.argv[1:]))]))
            written_to += [str(report), str(write_report(doc, report))]
            owner = evaluation_path(report)
            written_to += [str(owner), str(write_evaluation(evaluation, owner))]
    except (SynthgenError, ValueError) as exc:
        raise fail(exc) from exc
    if not quiet:
        if synth.sampling:
            typer.echo(f"conditions: {_said(synth.sampling)}", err=True)
        for text in doc["warnings"]:
            warning(text)
        # The last line names every file written, so a script (or a person) finds them.
        typer.echo(
            f"spent ε = {doc['epsilon']:.4f} of {epsilon:g} (δ = {doc['delta']:.2g}) in "
            f"{timings['total_s']:.1f} s; wrote {written:,} rows to "
            + ", ".join(written_to), err=True)


def sample(
    model: Annotated[Path, typer.Argument(help="A model saved by run --save-model.")],
    rows: Annotated[int | None, typer.Option(help="Rows to generate (required unless "
                                             "--seed-rows gives one row per seed row).",
                                             min=1)] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="CSV to write.")] = Path(
        "synthetic.csv"),
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    seed: Annotated[int | None, typer.Option(help="Sampling seed.")] = None,
    where: Where = None,
    rebalance: Rebalance = None,
    seed_rows: SeedRows = None,
) -> None:
    """Generate rows from a saved model (reads no training data, spends no budget)."""
    check_output_path("--out", out, inputs=(model,))
    from synthgen.io import write_csv
    from synthgen.synthesizer import Synthesizer

    try:
        set_threads(None)
        asked = _sampling_request(where, rebalance, seed_rows)
        if rows is None and asked["seed_rows"] is None:
            raise ValueError("--rows is required (or --seed-rows, for one row per seed row)")
        synth = Synthesizer.load(model, device=device)
        written = write_csv(synth.sample_chunks(rows, seed=seed, **asked), out)
    except (SynthgenError, ValueError) as exc:
        raise fail(exc) from exc
    typer.echo(f"wrote {written:,} rows to {out}", err=True)
    if synth.sampling:
        typer.echo(f"conditions: {_said(synth.sampling)}", err=True)


def _sampling_request(where: list[str] | None, rebalance: list[str] | None,
                      seed_rows: Path | None) -> dict[str, Any]:
    """The keyword arguments of ``Synthesizer.sample_chunks`` for --where, --rebalance and
    --seed-rows."""
    from synthgen.io import read_table
    from synthgen.models.conditions import from_options

    conditions, shares = from_options(where, rebalance)
    return {"conditions": conditions, "rebalance": shares,
            "seed_rows": read_table(seed_rows, min_rows=1) if seed_rows is not None else None}


def _said(sampling: dict[str, Any]) -> str:
    parts = list(sampling.get("conditions", []))
    if "rebalance" in sampling:
        r = sampling["rebalance"]
        parts += [f"{r['column']}={v} at {s:g}" for v, s in r["shares"].items()]
    if "seed_rows" in sampling:
        parts.append(f"{sampling['seed_rows']['rows']:,} seed rows")
    return ", ".join(parts)


def _is_url(text: str) -> bool:
    """``scheme://...`` (a database or an fsspec URL), not a local path."""
    return re.match(r"^[a-zA-Z][a-zA-Z0-9+.\-]*://", text) is not None


def _check_destinations(input: str, out: str | None, to_sql: str | None,
                        to_table: str | None) -> str | None:
    """The --out to write (None: only the database), after the destination options' checks."""
    if (to_sql is None) != (to_table is None):
        usage_error("--to-sql and --to-table go together: the database and its table",
                    "invalid-argument")
    if out is None and to_sql is None:
        return "synthetic.csv"
    return out


def _check_outputs(input: Path | None, **outputs: Path | None) -> None:
    """Every file the run will write, checked before the table is read (exit 2)."""
    paths = {f"--{name.replace('_', '-')}": path for name, path in outputs.items() if path}
    report = outputs.get("report")
    if report is not None:
        from synthgen.report_html import html_path  # light: no numpy, no matplotlib

        paths["--report (its HTML)"] = html_path(report)
    for option, path in paths.items():
        check_output_path(option, path, inputs=(input,) if input is not None else ())
    named = [path.resolve() for path in paths.values()]
    if len(set(named)) < len(named):
        usage_error("--out, --report, --save-model and --write-schema must name different "
                    "files", "bad-output-path")
