"""Checking an uploaded table before anything is stored about it."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from synthgen.errors import InputError, SchemaError
from synthgen.io import check_table, detect_format, read_csv_bytes, read_parquet_bytes
from synthgen.privacy.domains import check_declared
from synthgen.schema import TableSchema, infer_schema, parse_schema

# Text that a spreadsheet would run as a formula (OWASP "CSV injection"); numbers such as -3 or
# +4.5 are read as numbers by the parser and never reach this check.
_FORMULA = r"^[=+\-@\t\r]"


def find_formula_cells(df: pd.DataFrame, limit: int = 5) -> list[str]:
    """Names of the (first few) text columns holding a cell that starts like a formula."""
    found = []
    for name in df.columns:
        col = df[name]
        if isinstance(col.dtype, pd.CategoricalDtype):
            # text read as categoricals: every distinct value is a category; check those
            col = pd.Series(col.cat.categories)
        if col.dtype != object and not pd.api.types.is_string_dtype(col.dtype):
            continue
        text = col.dropna().astype(str)
        if text.str.contains(_FORMULA, regex=True).any():
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
    if not isinstance(document, dict):
        raise SchemaError("the schema must be a JSON object")
    return parse_schema(document)


def inspect_upload(raw: bytes, name: str, schema_text: str | None) -> dict[str, Any]:
    """Parse and check an upload; raise InputError or SchemaError (the caller answers 4xx)."""
    fmt = detect_format(raw[:64], name)
    df = read_parquet_bytes(raw, name) if fmt == "parquet" else read_csv_bytes(raw, name)
    df = check_table(df, name)
    formulas = find_formula_cells(df)
    if formulas:
        raise InputError(
            f"{name} has cells that start like a spreadsheet formula (=, +, -, @, tab or "
            f"carriage return) in column(s) {', '.join(formulas)}; remove the leading "
            "character, or quote such values with a leading apostrophe, and upload again",
            code="formula-cells")
    declared = parse_public_schema(schema_text)
    schema = infer_schema(df, declared)
    check_declared(df, schema)  # the table must fit its declared schema (422, nothing stored)
    return {
        "format": fmt,
        "rows": len(df),
        "columns": [{"name": c.name, "kind": c.kind.value} for c in schema.columns],
        "public_schema": declared.model_dump(mode="json") if declared else None,
    }
