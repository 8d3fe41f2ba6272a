"""Reading tables with limits and clear errors; writing CSVs that are safe to open.

Every way a file can be unusable ends in an :class:`~synthgen.errors.InputError` with a code and
a sentence saying what to do, never in a traceback from the parser.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pandas.api.types import union_categoricals

from synthgen.errors import InputError

# DP synthesis on a handful of rows gives noise only; below this we refuse with a clear message.
MIN_ROWS = 20
DEFAULT_MAX_BYTES = 2 * 1024**3

# What a spreadsheet runs as a formula (OWASP "CSV injection"): a cell starting with = + - @, tab
# or CR; also the fullwidth and small forms of = + - @ and the minus sign, which spreadsheets
# (Excel, LibreOffice with autocorrection) take for the ASCII ones, and any of these behind
# zero-width characters or a byte-order mark, which are invisible in the cell.
_FORMULA_FIRST = "=+\\-@\t\r\uff1d\uff0b\uff0d\uff20\ufe62\ufe63\ufe66\ufe6b\u2212"
_INVISIBLE = "\ufeff\u200b\u200c\u200d\u2060"
FORMULA_PATTERN = f"^[{_INVISIBLE}]*[{_FORMULA_FIRST}]"
_FORMULA_RE = re.compile(FORMULA_PATTERN)


def starts_like_formula(text: str) -> bool:
    """Whether a spreadsheet could run ``text`` (a cell or a column name) as a formula."""
    return _FORMULA_RE.match(text) is not None


@dataclass(frozen=True)
class ReadLimits:
    """How big a table may become once decoded, checked while reading (a compressed Parquet
    file or a CSV of empty cells decodes to far more memory than its size on disk).

    ``max_bytes`` caps the decoded size: Arrow's buffers for Parquet, 8 bytes a cell for a CSV
    (the smallest a parsed cell takes). None: no cap.
    """

    max_rows: int | None = None
    max_columns: int | None = None
    max_bytes: int | None = None

    def check(self, name: str, rows: int, columns: int, decoded_bytes: int | None = None) -> None:
        if self.max_columns is not None and columns > self.max_columns:
            raise TableTooLarge(f"{name} has {columns:,} columns, over this server's limit of "
                                f"{self.max_columns:,}; drop columns or ask the operator to "
                                "raise SYNTHGEN_MAX_TABLE_COLUMNS")
        if self.max_rows is not None and rows > self.max_rows:
            raise TableTooLarge(f"{name} has {rows:,} rows or more, over this server's limit "
                                f"of {self.max_rows:,}; sample it down or ask the operator to "
                                "raise SYNTHGEN_MAX_TABLE_ROWS")
        if decoded_bytes is None:
            decoded_bytes = rows * columns * 8
        if self.max_bytes is not None and decoded_bytes > self.max_bytes:
            raise TableTooLarge(f"{name} decodes to {decoded_bytes:,} bytes or more, over this "
                                f"server's limit of {self.max_bytes:,}; upload fewer rows or "
                                "columns, or ask the operator to raise "
                                "SYNTHGEN_MAX_TABLE_BYTES")


NO_LIMITS = ReadLimits()


class TableTooLarge(InputError):
    """The table is over a size limit (before or while decoding it)."""

    code = "too-large"

# Text parsed per chunk: bounds the reader's peak memory to the compact table plus one chunk of
# Python strings, whatever the file's size.
CHUNK_BYTES = 32 * 1024**2
_SCAN_BYTES = 16 * 1024**2


SUPPORTED = "CSV (UTF-8, header row) and Parquet"
PARQUET_MAGIC = b"PAR1"
# Formats people upload by mistake, known by their first bytes: named in the error, rather than
# reported as a CSV with a bad encoding or no rows.
_OTHER_FORMATS = (
    (b"PK\x03\x04", "a zip archive (an Excel .xlsx or OpenDocument .ods workbook is one)"),
    (b"\xd0\xcf\x11\xe0", "an Excel 97-2003 workbook (.xls)"),
    (b"\x1f\x8b", "gzip-compressed"),
    (b"%PDF", "a PDF document"),
    (b"SQLite format 3", "an SQLite database"),
    (b"ARROW1", "an Arrow/Feather file"),
    (b"Obj\x01", "an Avro file"),
)
_JSON_SUFFIXES = (".json", ".jsonl", ".ndjson", ".geojson")


def detect_format(head: bytes, name: str = "the file") -> str:
    """``"parquet"`` or ``"csv"`` from a file's first bytes (and its name, for JSON); raise an
    ``unsupported-format`` InputError that names the format for anything else."""
    if head.startswith(PARQUET_MAGIC):
        return "parquet"
    found = next((what for magic, what in _OTHER_FORMATS if head.startswith(magic)), None)
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    # A CSV header may start with "[" (a column named "[id]"); a JSON array goes on with a
    # value: an object, an array, a string or its end.
    array = text[:1] == b"[" and text[1:].lstrip()[:1] in (b"{", b"[", b'"', b"]")
    if found is None and (name.lower().endswith(_JSON_SUFFIXES) or text[:1] == b"{" or array):
        found = "JSON"
    if found is not None:
        raise InputError(f"{name} is {found}, which synthgen does not read; supported formats: "
                         f"{SUPPORTED}. Export the table as one of them and try again",
                         code="unsupported-format")
    return "csv"


def _bad_encoding(source: BinaryIO, name: str) -> InputError | None:
    """The error for the first byte that is not UTF-8, found in bounded slices (no full copy)."""
    source.seek(0)
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0
    while True:
        block = source.read(_SCAN_BYTES)
        try:
            decoder.decode(block, final=not block)
        except UnicodeDecodeError as exc:
            # exc.start counts from the bytes the decoder held back from the previous slice
            at = offset + exc.start - (len(exc.object) - len(block))
            return InputError(
                f"{name} is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {at}); "
                "save it as UTF-8 and upload it again",
                code="bad-encoding",
            )
        if not block:
            return None
        offset += len(block)


def _record_end(buf: bytes, last: bool) -> int:
    """The offset just after the last (or first) line break of ``buf`` that ends a record: one
    outside double quotes, as ``buf`` starts at a record boundary; -1 if there is none."""
    if b'"' not in buf:  # the common case: no quoting, any line break ends a record
        at = buf.rfind(b"\n") if last else buf.find(b"\n")
        return at + 1 if at >= 0 else -1
    data = np.frombuffer(buf, dtype=np.uint8)
    inside = np.bitwise_xor.accumulate((data == ord('"')).astype(np.uint8))  # 1 inside quotes
    ends = np.flatnonzero((data == ord("\n")) & (inside == 0))
    if ends.size == 0:
        return -1
    return int(ends[-1] if last else ends[0]) + 1


def _blocks(source: BinaryIO, chunk_bytes: int) -> Iterator[tuple[bytes, int]]:
    """The file as blocks of about ``chunk_bytes`` of whole records, each with the line of the
    file it starts on."""
    pending = b""
    line = 1
    while True:
        data = source.read(chunk_bytes)
        buf = pending + data
        if not data:
            if buf:
                yield buf, line
            return
        cut = _record_end(buf, last=True)
        if cut < 0:  # a record longer than a block: read on
            pending = buf
            continue
        yield buf[:cut], line
        line += buf.count(b"\n", 0, cut)
        pending = buf[cut:]


def _compact(values: pd.Series) -> pd.Series:
    """A chunk's text column as a categorical: each distinct string is kept once."""
    if values.dtype == object and pd.api.types.infer_dtype(values, skipna=True) == "string":
        return values.astype("category")
    return values


def _chunk_class(values: pd.Series) -> str:
    """What a chunk says about a column's type: text, number, bool, or nothing (all missing)."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        return "text"
    if values.isna().all():
        return "null"
    if pd.api.types.is_bool_dtype(values.dtype) or values.dtype == object:
        return "bool"  # the C parser's only non-text objects are booleans (with missing cells)
    return "number"


def _combine(parts: list[pd.Series]) -> pd.Series | None:
    """One column from its chunks, as a single read of the file would type it; None when the
    chunks disagree (numbers in some, text in others): the column must be read as text."""
    classes = {_chunk_class(p) for p in parts} - {"null"}
    if len(classes) > 1:
        return None
    if classes == {"text"}:
        as_text = [p if isinstance(p.dtype, pd.CategoricalDtype)
                   else pd.Series(pd.Categorical.from_codes(
                       np.full(len(p), -1), categories=pd.Index([], dtype=object)))
                   for p in parts]
        return pd.Series(union_categoricals([p.array for p in as_text]))
    return pd.concat(parts, ignore_index=True)  # ints and floats give floats, as in one read


def _parse_csv(source: BinaryIO, chunk_bytes: int, text: list[str],
               limits: ReadLimits = NO_LIMITS, name: str = "the file") -> pd.DataFrame:
    """Parse in blocks, compacting text per block; columns in ``text`` are read as strings.

    Each block is parsed on its own behind the header line, so every row is checked against
    the header (pandas' own chunked reader skips that check on each chunk's first row).
    Raises _Retype with the columns whose blocks disagree about their type.
    """
    source.seek(0)
    columns: dict[str, list[pd.Series]] = {}
    header = b""
    rows = 0
    for block, line in _blocks(source, chunk_bytes):
        if not header:  # the first block starts with the header line
            end = _record_end(block, last=False)
            header = block[:end] if end > 0 else block
            body, shift = block, 0
            if limits.max_columns is not None:  # before any row is parsed
                cells = next(csv.reader([header.decode("utf-8", "replace")]), [])
                limits.check(name, 0, len(cells))
        else:  # the block's first row is line 2 of what is parsed
            body, shift = header + block, line - 2
        try:
            with warnings.catch_warnings():
                # index_col=False: a first row with an extra cell is not taken as an index
                # column; pandas warns and drops the cell, so the warning is the error
                warnings.simplefilter("error", pd.errors.ParserWarning)
                chunk = pd.read_csv(io.BytesIO(body), encoding="utf-8", low_memory=False,
                                    index_col=False, dtype=dict.fromkeys(text, str))
        except pd.errors.ParserError as exc:  # name the line of the file, not of the block
            raise pd.errors.ParserError(_shift_lines(str(exc), shift)) from exc
        except pd.errors.ParserWarning as exc:
            raise pd.errors.ParserError(
                f"more cells than the header has in line {2 + shift}") from exc
        del body
        rows += len(chunk)
        limits.check(name, rows, chunk.shape[1])
        for column in chunk.columns:
            columns.setdefault(column, []).append(_compact(chunk[column]))
    if not header:
        raise pd.errors.EmptyDataError("No columns to parse from file")
    out: dict[str, pd.Series] = {}
    conflicts = []
    for column in list(columns):
        combined = _combine(columns.pop(column))  # frees the column's chunks as it goes
        if combined is None:
            conflicts.append(column)
        else:
            out[column] = combined
    if conflicts:
        raise _Retype(conflicts)
    return pd.DataFrame(out, copy=False)


def _shift_lines(message: str, shift: int) -> str:
    return re.sub(r"\b(line|row) (\d+)", lambda m: f"{m[1]} {int(m[2]) + shift}", message)


class _Retype(Exception):
    def __init__(self, columns: list[str]) -> None:
        super().__init__(columns)
        self.columns = columns


def read_csv(source: BinaryIO, name: str = "the file", *,
             chunk_bytes: int = CHUNK_BYTES, limits: ReadLimits = NO_LIMITS) -> pd.DataFrame:
    """A DataFrame from a binary CSV stream (header row; empty cells are missing values).

    Read in chunks of about ``chunk_bytes`` of text, text columns turned into categoricals per
    chunk, so a large file needs about the final compact table plus one chunk of memory. The
    column types are those of one ``pandas.read_csv`` of the whole file: a column whose chunks
    disagree (numbers in one, text in another) is read again as text. ``limits`` are checked
    on the header and after each chunk, so a table over them stops the read early.
    """
    text: list[str] = []
    for _ in range(2):  # the second pass reads the disagreeing columns as text
        try:
            return _parse_csv(source, chunk_bytes, text, limits, name)
        except _Retype as retype:
            text = retype.columns
        except UnicodeDecodeError as exc:
            raise _bad_encoding(source, name) or InputError(
                f"{name} is not UTF-8 text", code="bad-encoding") from exc
        except pd.errors.EmptyDataError as exc:
            raise InputError(f"{name} has no columns", code="empty-table") from exc
        except (pd.errors.ParserError, csv.Error, ValueError) as exc:
            raise InputError(
                f"{name} is not a well-formed CSV: {str(exc).strip()}; check quoting and that "
                "every row has as many cells as the header",
                code="malformed-csv",
            ) from exc
    raise AssertionError("columns read as text cannot disagree")  # pragma: no cover


def read_csv_bytes(raw: bytes, name: str = "the file", *, chunk_bytes: int = CHUNK_BYTES,
                   categorical_text: bool = False,
                   limits: ReadLimits = NO_LIMITS) -> pd.DataFrame:
    """A DataFrame from CSV bytes (header row; empty cells are missing values).

    Parsed in chunks like :func:`read_csv`. Text columns come back as object columns unless
    ``categorical_text``: the service's formula-cell check (``find_formula_cells``) only looks
    at object and string columns. Each cell then refers to its column's one copy of the string
    (8 bytes a cell), not to a string of its own.
    """
    if not raw or raw.isspace():  # (not raw.strip(): no copy of a large upload)
        raise InputError(f"{name} is empty; give a CSV with a header row and data rows",
                         code="empty-table")
    df = read_csv(io.BytesIO(raw), name, chunk_bytes=chunk_bytes, limits=limits)
    if categorical_text:
        return df
    return df.apply(lambda c: c.astype(object) if isinstance(c.dtype, pd.CategoricalDtype) else c)


def read_parquet_bytes(raw: bytes, name: str = "the file", *,
                       limits: ReadLimits = NO_LIMITS) -> pd.DataFrame:
    # text as object columns, for the service's formula-cell check (see read_csv_bytes)
    return _read_parquet(pa.BufferReader(raw), name, categorical_text=False, limits=limits)


PARQUET_BATCH_ROWS = 64 * 1024


def _read_parquet(source: str | pa.NativeFile, name: str, *, categorical_text: bool = True,
                  limits: ReadLimits = NO_LIMITS) -> pd.DataFrame:
    """Read a Parquet file within ``limits``: its footer (rows, columns, uncompressed size) is
    checked before any page is decoded, then batches are decoded one at a time and counted, so
    a footer that understates the table stops the read at the limit, not in the allocator."""
    try:
        parquet = pq.ParquetFile(source)
        meta = parquet.metadata
        limits.check(name, meta.num_rows, meta.num_columns,
                     sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups)))
        batches = []
        rows = decoded = 0
        for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS):
            rows += batch.num_rows
            decoded += batch.nbytes
            limits.check(name, rows, batch.num_columns, decoded)
            batches.append(batch)
        table = pa.Table.from_batches(batches, schema=parquet.schema_arrow)
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"{name} is not a readable Parquet file: {exc}",
                         code="malformed-parquet") from exc
    # text columns as categoricals, as the CSV reader gives them (each string kept once)
    return table.to_pandas(strings_to_categorical=categorical_text)


def read_table(path: str | Path, *, max_bytes: int = DEFAULT_MAX_BYTES,
               chunk_bytes: int = CHUNK_BYTES, limits: ReadLimits = NO_LIMITS) -> pd.DataFrame:
    """Read a CSV or Parquet file (by its suffix) and check it is usable for synthesis.

    The file is streamed, never held whole in memory (see :func:`read_csv`).
    """
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
    with open(path, "rb") as handle:
        fmt = detect_format(handle.read(64), path.name)
    if fmt == "parquet" or path.suffix.lower() in {".parquet", ".pq"}:
        df = _read_parquet(str(path), path.name, limits=limits)
    else:
        with open(path, "rb") as handle:
            if size <= 65536 and not handle.read().strip():
                raise InputError(f"{path.name} is empty; give a CSV with a header row and data "
                                 "rows", code="empty-table")
            df = read_csv(handle, path.name, chunk_bytes=chunk_bytes, limits=limits)
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
    """Prefix text cells and column names that a spreadsheet would run as a formula with a
    single quote (OWASP)."""
    out = df.copy(deep=False)
    out.columns = [f"'{c}" if starts_like_formula(str(c)) else c for c in out.columns]
    for name in out.columns:
        col = out[name]
        if isinstance(col.dtype, pd.CategoricalDtype):
            # escape each category once; the codes (one per row) are untouched
            labels = pd.Series(col.cat.categories)
            escaped = _escape_text(labels)
            if escaped is labels:
                continue
            if escaped.is_unique:
                out[name] = col.cat.rename_categories(pd.Index(escaped, dtype=object))
                continue
            col = col.astype(object)  # "=x" and "'=x" both present: escape cell by cell
        elif col.dtype != object and not pd.api.types.is_string_dtype(col.dtype):
            continue
        out[name] = _escape_text(col)
    return out


def _escape_text(col: pd.Series) -> pd.Series:
    """``col`` with risky cells prefixed, or ``col`` itself when none is risky."""
    as_text = col.astype("string")
    risky = as_text.str.contains(FORMULA_PATTERN, regex=True).fillna(False).to_numpy(bool)
    if not risky.any():
        return col
    col = col.astype(object).copy()
    col[risky] = "'" + as_text[risky].astype(object)
    return col


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
