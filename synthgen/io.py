"""Reading tables with limits and clear errors; writing CSVs that are safe to open.

Every way a file can be unusable ends in an :class:`~synthgen.errors.InputError` with a code and
a sentence saying what to do, never in a traceback from the parser.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from pathlib import Path
from typing import IO

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from synthgen.errors import InputError

# DP synthesis on a handful of rows gives noise only; below this we refuse with a clear message.
MIN_ROWS = 20
DEFAULT_MAX_BYTES = 2 * 1024**3

_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def _decode(raw: bytes, name: str) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(
            f"{name} is not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
            "save it as UTF-8 and upload it again",
            code="bad-encoding",
        ) from exc


def read_csv_bytes(raw: bytes, name: str = "the file") -> pd.DataFrame:
    """A DataFrame from CSV bytes (header row; empty cells are missing values)."""
    if not raw.strip():
        raise InputError(f"{name} is empty; give a CSV with a header row and data rows",
                         code="empty-table")
    text = _decode(raw, name)
    try:
        df = pd.read_csv(io.StringIO(text), low_memory=False)
    except pd.errors.EmptyDataError as exc:
        raise InputError(f"{name} has no columns", code="empty-table") from exc
    except (pd.errors.ParserError, csv.Error, ValueError) as exc:
        raise InputError(
            f"{name} is not a well-formed CSV: {str(exc).strip()}; check quoting and that every "
            "row has as many cells as the header",
            code="malformed-csv",
        ) from exc
    return df


def read_parquet_bytes(raw: bytes, name: str = "the file") -> pd.DataFrame:
    try:
        table = pq.read_table(pa.BufferReader(raw))
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"{name} is not a readable Parquet file: {exc}",
                         code="malformed-parquet") from exc
    return table.to_pandas()


def read_table(path: str | Path, *, max_bytes: int = DEFAULT_MAX_BYTES) -> pd.DataFrame:
    """Read a CSV or Parquet file (by its suffix) and check it is usable for synthesis."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise InputError(f"cannot read {str(path)!r}: {exc.strerror}", code="not-found") from exc
    if size > max_bytes:
        raise InputError(
            f"{path.name} is {size:,} bytes, over the limit of {max_bytes:,}",
            code="too-large",
        )
    raw = path.read_bytes()
    if path.suffix.lower() in {".parquet", ".pq"}:
        df = read_parquet_bytes(raw, path.name)
    else:
        df = read_csv_bytes(raw, path.name)
    return check_table(df, path.name)


def check_table(df: pd.DataFrame, name: str = "the table") -> pd.DataFrame:
    """Refuse tables that cannot be synthesised, with a message that says why."""
    if df.shape[1] == 0:
        raise InputError(f"{name} has no columns", code="empty-table")
    if len(df) == 0:
        raise InputError(f"{name} has a header but no data rows", code="empty-table")
    if len(df) < MIN_ROWS:
        raise InputError(
            f"{name} has {len(df)} row(s); differentially private synthesis needs at least "
            f"{MIN_ROWS} (with fewer, the noise is all there is)",
            code="too-few-rows",
        )
    names = [str(c) for c in df.columns]
    if any(not n.strip() or n.startswith("Unnamed: ") for n in names):
        raise InputError(f"{name} has a column without a name; give every column a header",
                         code="malformed-csv")
    df.columns = names
    return df


def escape_formulas(df: pd.DataFrame) -> pd.DataFrame:
    """Prefix text cells that a spreadsheet would run as a formula with a single quote (OWASP)."""
    out = df.copy(deep=False)
    for name in out.columns:
        col = out[name]
        if col.dtype != object and not pd.api.types.is_string_dtype(col.dtype):
            continue
        as_text = col.astype("string")
        risky = as_text.str.startswith(_FORMULA_PREFIXES).fillna(False).to_numpy(bool)
        if risky.any():
            col = col.astype(object).copy()
            col[risky] = "'" + as_text[risky].astype(object)
            out[name] = col
    return out


def write_csv(
    frames: pd.DataFrame | Iterable[pd.DataFrame], target: str | Path | IO[str]
) -> int:
    """Write one frame, or chunks of one table, as a CSV with formula cells escaped.

    Chunks are written as they come, so a large output never needs to be in memory at once.
    Returns the number of rows written.
    """
    chunks = [frames] if isinstance(frames, pd.DataFrame) else frames
    close = False
    if isinstance(target, str | Path):
        handle: IO[str] = open(target, "w", encoding="utf-8", newline="")  # noqa: SIM115
        close = True
    else:
        handle = target
    rows = 0
    try:
        for i, chunk in enumerate(chunks):
            escape_formulas(chunk).to_csv(handle, index=False, header=(i == 0))
            rows += len(chunk)
    finally:
        if close:
            handle.close()
    return rows
