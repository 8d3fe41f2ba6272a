"""Checking an uploaded table before anything is stored about it."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from synthgen.errors import InputError, SchemaError
from synthgen.io import (
    AUTO,
    FORMULA_PATTERN,
    NO_LIMITS,
    PARQUET_MAGIC,
    CsvOptions,
    ReadLimits,
    check_table,
    detect_format,
    read_csv_bytes,
    read_parquet_bytes,
    refuse_csv_options,
    starts_like_formula,
)
from synthgen.privacy.domains import check_declared
from synthgen.schema import SCHEMA_MAX_DEPTH, TableSchema, infer_schema, parse_schema


def table_format(raw: bytes, name: str = "") -> str:
    """Parquet when the bytes are framed by its magic at both ends (a CSV whose header starts
    with ``PAR1`` is still a CSV) or when the name says so (then a broken file is reported as
    malformed Parquet, not as a strange CSV); CSV otherwise, unless its first bytes are
    another format's (an ``unsupported-format`` InputError, see
    :func:`synthgen.io.detect_format`)."""
    framed = len(raw) >= 12 and raw[:4] == PARQUET_MAGIC and raw[-4:] == PARQUET_MAGIC
    if framed or name.lower().endswith((".parquet", ".pq")):
        return "parquet"
    detect_format(raw[:64], name)  # another format (xlsx, JSON, gzip, ...): unsupported-format
    return "csv"


def read_upload(raw: bytes, name: str, fmt: str, limits: ReadLimits = NO_LIMITS,
                options: CsvOptions = AUTO) -> pd.DataFrame:
    """An upload's table within ``limits``, checked usable (the upload and training read it
    the same way: with the same given ``options``, the rest detected from the same bytes)."""
    if fmt == "parquet":
        refuse_csv_options(options, name)
        df = read_parquet_bytes(raw, name, limits=limits)
    else:
        df = read_csv_bytes(raw, name, limits=limits, delimiter=options.delimiter,
                            encoding=options.encoding, decimal=options.decimal)
    return check_table(df, name)


def stored_options(fmt: str, csv_options: dict[str, Any] | None) -> CsvOptions:
    """The options an upload was given, from its ``csv_options`` (see :func:`inspect_upload`);
    a CSV uploaded before they were kept was read as UTF-8 with commas."""
    if fmt == "parquet":
        return AUTO
    if not csv_options:
        return CsvOptions(delimiter=",", encoding="utf-8")
    return CsvOptions(**{k: csv_options[k] for k in csv_options.get("given", [])})


def find_formula_names(df: pd.DataFrame, limit: int = 5) -> list[str]:
    """The (first few) column names that start like a formula: the header line of every CSV
    the service writes holds them, so they get the same check as cells."""
    return [str(c) for c in df.columns if starts_like_formula(str(c))][:limit]


def find_formula_cells(df: pd.DataFrame, limit: int = 5) -> list[str]:
    """Names of the (first few) text columns holding a cell that starts like a formula (text
    that a spreadsheet would run, see :data:`synthgen.io.FORMULA_PATTERN`; numbers such as -3
    are read as numbers by the parser and never reach this check)."""
    found = []
    for name in df.columns:
        col = df[name]
        if isinstance(col.dtype, pd.CategoricalDtype):
            # text read as categoricals: every distinct value is a category; check those
            col = pd.Series(col.cat.categories)
        if col.dtype != object and not pd.api.types.is_string_dtype(col.dtype):
            continue
        text = col.dropna().astype(str)
        if text.str.contains(FORMULA_PATTERN, regex=True).any():
            found.append(str(name))
            if len(found) >= limit:
                break
    return found


def parse_public_schema(text: str | None) -> TableSchema | None:
    if text is None or not text.strip():
        return None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SchemaError(f"the schema is not valid JSON: {exc.msg} (line {exc.lineno})") from exc
    except RecursionError as exc:  # the decoder recurses per level: 100,000 "[" end here
        raise SchemaError(f"the schema nests deeper than {SCHEMA_MAX_DEPTH} levels; a schema "
                          "is a list of flat column objects") from exc
    if not isinstance(document, dict):
        raise SchemaError("the schema must be a JSON object")
    return parse_schema(document)


def inspect_upload(raw: bytes, name: str, schema_text: str | None,
                   limits: ReadLimits = NO_LIMITS, options: CsvOptions = AUTO
                   ) -> dict[str, Any]:
    """Parse and check an upload; raise InputError or SchemaError (the caller answers 4xx).
    ``csv_options`` in the answer: how a CSV was read (delimiter, encoding, decimal mark) and
    which of those were ``given``."""
    fmt = table_format(raw, name)
    df = read_upload(raw, name, fmt, limits, options)
    read = df.attrs.get("csv")
    csv_options = None if read is None else {**read, "given": sorted(options.given)}
    names = find_formula_names(df)
    what = ("=, +, -, @, tab, carriage return or a fullwidth lookalike, also behind spaces or "
            "invisible characters")
    if names:
        raise InputError(
            f"{name} has a column name that starts like a spreadsheet formula ({what}): "
            f"{', '.join(map(repr, names))}; rename the column and upload again",
            code="formula-cells")
    formulas = find_formula_cells(df)
    if formulas:
        raise InputError(
            f"{name} has cells that start like a spreadsheet formula ({what}) in column(s) "
            f"{', '.join(formulas)}; remove the leading character, or quote such values with "
            "a leading apostrophe, and upload again", code="formula-cells")
    declared = parse_public_schema(schema_text)
    schema = infer_schema(df, declared)
    check_declared(df, schema)  # the table must fit its declared schema (422, nothing stored)
    return {
        "format": fmt,
        "rows": len(df),
        "columns": [{"name": c.name, "kind": c.kind.value} for c in schema.columns],
        "public_schema": declared.model_dump(mode="json") if declared else None,
        "csv_options": csv_options,
    }
