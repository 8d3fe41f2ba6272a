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
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any, BinaryIO

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pandas.api.types import union_categoricals

from synthgen.errors import InputError

# DP synthesis on a handful of rows gives noise only; below this we refuse with a clear message.
MIN_ROWS = 20
DEFAULT_MAX_BYTES = 2 * 1024**3
# Any file may decode to this much whatever its size (see ReadLimits.max_expansion).
EXPANSION_FLOOR = 64 * 1024**2

# What a spreadsheet runs as a formula (OWASP "CSV injection"): a cell starting with = + - @, tab
# or CR; also the fullwidth and small forms of = + - @ and the minus sign, which spreadsheets
# (Excel, LibreOffice with autocorrection) take for the ASCII ones, and any of these behind
# zero-width characters or a byte-order mark, which are invisible in the cell, or behind
# spaces (any Unicode space: a no-break space, U+180E), which spreadsheets may trim first.
_FORMULA_FIRST = "=+\\-@\t\r\uff1d\uff0b\uff0d\uff20\ufe62\ufe63\ufe66\ufe6b\u2212"
_INVISIBLE = "\ufeff\u200b\u200c\u200d\u2060\u180e\\s"
FORMULA_PATTERN = f"^[{_INVISIBLE}]*[{_FORMULA_FIRST}]"
_FORMULA_RE = re.compile(FORMULA_PATTERN)


def starts_like_formula(text: str) -> bool:
    """Whether a spreadsheet could run ``text`` (a cell or a column name) as a formula."""
    return _FORMULA_RE.match(text) is not None


@dataclass(frozen=True)
class ReadLimits:
    """How big a table may become once decoded, checked while reading (a compressed Parquet
    file or a CSV of empty cells decodes to far more memory than its size on disk).

    ``max_bytes`` caps the decoded size: 8 bytes a cell (the smallest a parsed cell takes),
    plus the text of string cells. ``max_expansion`` caps it relative to the file's size
    (beyond :data:`EXPANSION_FLOOR`, which any file may decode to): a Parquet file of a few
    hundred bytes can hold a 40 kB string repeated 65,536 times (2.6 GB of text), which no real
    table's compression comes near. None: no cap.
    """

    max_rows: int | None = None
    max_columns: int | None = None
    max_bytes: int | None = None
    max_expansion: float | None = None
    file_bytes: int | None = None  # the size of the file being read (see for_file)

    def for_file(self, size: int) -> ReadLimits:
        """These limits for a file of ``size`` bytes (the expansion cap becomes a byte cap)."""
        return replace(self, file_bytes=size)

    @property
    def _expansion_cap(self) -> int | None:
        if self.max_expansion is None or self.file_bytes is None:
            return None
        return max(EXPANSION_FLOOR, int(self.max_expansion * self.file_bytes))

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
        cap = self._expansion_cap
        if cap is not None and decoded_bytes > cap:
            raise TableTooLarge(f"{name} decodes to {decoded_bytes:,} bytes or more from a file "
                                f"of {self.file_bytes:,} bytes, over this server's limit of "
                                f"{cap:,} ({self.max_expansion:g} times the file, at least "
                                f"{EXPANSION_FLOOR // 1024**2} MiB); upload it as CSV or with "
                                "less repetitive columns, or ask the operator to raise "
                                "SYNTHGEN_MAX_TABLE_EXPANSION")


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


# ----------------------------------------------------------------------------- CSV dialects
#
# The delimiter and the encoding are facts of the file's format, like being a CSV at all: they
# are decided from the header line and the bytes' structure (which delimiter splits the header;
# whether the bytes are valid UTF-8), public like the file format, never from what the cells
# say. The decimal mark is never guessed (a "1,5" could be a list): given, the reader turns such
# numbers into numbers; not given, numbers written with a comma stay text.

DELIMITERS = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}
_DELIMITER_WORDS = {"comma": ",", "semicolon": ";", "tab": "\t", "\\t": "\t", "pipe": "|"}
DECIMALS = (".", ",")
# How to set each option, in words that fit both the CLI and the API.
OVERRIDE = ("give the delimiter or the encoding (synthgen run --delimiter / --encoding; the "
            "API's delimiter and encoding form fields)")
_WINDOWS_1252 = "cp1252"
_FALLBACK_ERRORS = "synthgen-latin-1"


def _latin_1_fallback(exc: UnicodeError) -> tuple[str, int]:
    """The five bytes Windows-1252 leaves undefined (0x81, 0x8d, 0x8f, 0x90, 0x9d) read as in
    Latin-1, so that a Latin-1 or Windows-1252 file always decodes."""
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    return exc.object[exc.start:exc.end].decode("latin-1"), exc.end


codecs.register_error(_FALLBACK_ERRORS, _latin_1_fallback)


@dataclass(frozen=True)
class CsvOptions:
    """How to read a CSV: each None is detected (delimiter, encoding) or left alone (decimal).

    ``delimiter``: one character, or comma / semicolon / tab / pipe. ``encoding``: any codec
    Python knows that writes ASCII as ASCII (utf-8, latin-1, cp1252, iso-8859-15, ...).
    ``decimal``: ``.`` or ``,``; the other one is then the thousands separator of numbers
    written in groups of three digits (``1.234,50``).
    """

    delimiter: str | None = None
    encoding: str | None = None
    decimal: str | None = None

    @classmethod
    def of(cls, delimiter: str | None = None, encoding: str | None = None,
           decimal: str | None = None) -> CsvOptions:
        """Checked options (an ``invalid-argument`` InputError for a bad one); empty strings
        count as not given (an empty form field)."""
        if delimiter:
            delimiter = _DELIMITER_WORDS.get(delimiter.lower(), delimiter)
            if len(delimiter) != 1 or delimiter in '"\r\n':
                raise InputError(f"the delimiter {delimiter!r} is not one character; give one "
                                 "character, or comma, semicolon, tab or pipe",
                                 code="invalid-argument")
        if encoding:
            try:
                info = codecs.lookup(encoding)
            except LookupError as exc:
                raise InputError(f"unknown encoding {encoding!r}; give one such as utf-8, "
                                 "cp1252 or latin-1", code="invalid-argument") from exc
            if _ascii_safe(info.name) is False:
                raise InputError(f"synthgen reads encodings that write ASCII as ASCII (utf-8, "
                                 f"cp1252, latin-1, ...), not {encoding}; save the file as "
                                 "UTF-8", code="invalid-argument")
            encoding = info.name
        if decimal and decimal not in DECIMALS:
            raise InputError(f"the decimal mark must be . or , (not {decimal!r})",
                             code="invalid-argument")
        if decimal and delimiter and decimal == delimiter:
            raise InputError("the decimal mark and the delimiter cannot both be "
                             f"{decimal!r}", code="invalid-argument")
        return cls(delimiter or None, encoding or None, decimal or None)

    @property
    def given(self) -> dict[str, str]:
        return {k: v for k, v in (("delimiter", self.delimiter), ("encoding", self.encoding),
                                  ("decimal", self.decimal)) if v is not None}


AUTO = CsvOptions()


def _ascii_safe(encoding: str) -> bool:
    """Whether ``encoding`` writes ASCII text as the same bytes (the block reader splits
    records at ASCII quotes and line breaks in the raw bytes)."""
    sample = 'a,;\t|"\n\r0.9 Zz'
    try:
        return sample.encode(encoding) == sample.encode("ascii")
    except (UnicodeError, LookupError):
        return False


def sniff_delimiter(header: str) -> str:
    """The delimiter that splits the header line into the most cells (outside double quotes):
    comma, semicolon, tab or pipe; comma for a header of one cell, and on a tie, the first of
    those in that order."""
    outside = re.sub(r'"[^"]*"', "", header)
    counts = {d: outside.count(d) for d in DELIMITERS}
    best = max(counts.values())
    return next(d for d in DELIMITERS if counts[d] == best) if best else ","


def _describe(options: CsvOptions, delimiter: str, encoding: str) -> str:
    """How the file was read, for an error message: each setting and whether it was given."""
    said = "given" if options.delimiter else "detected from the header"
    parts = [f"delimiter {DELIMITERS.get(delimiter, repr(delimiter))} ({said})",
             f"encoding {encoding} ({'given' if options.encoding else 'detected'})"]
    if options.decimal:
        parts.append(f"decimal mark {options.decimal!r}")
    return ", ".join(parts)


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


def _first_bad_byte(source: BinaryIO, encoding: str = "utf-8") -> tuple[int, int] | None:
    """The first byte that is not ``encoding`` (its value and offset), found in bounded slices
    (no full copy); None if the file decodes."""
    source.seek(0)
    decoder = codecs.getincrementaldecoder(encoding)()
    offset = 0
    while True:
        block = source.read(_SCAN_BYTES)
        try:
            decoder.decode(block, final=not block)
        except UnicodeDecodeError as exc:
            # exc.start counts from the bytes the decoder held back from the previous slice
            at = offset + exc.start - (len(exc.object) - len(block))
            return exc.object[exc.start], at
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


# A field that starts with a zero followed by a digit (``02139``, ``007``): pandas would read
# it as the number 2139 and lose the zeros that make it a code. Looked for in a block's bytes
# first (most blocks have none), then per number column.
_LEADING_ZERO_FIELD = re.compile(rb'(?:^|[,;\t|])"?0\d', re.MULTILINE)


def _keep_zero_codes(chunk: pd.DataFrame, body: bytes, options: dict[str, Any]) -> None:
    """Columns of ``chunk`` that pandas read as numbers but that hold digit strings with
    leading zeros go back to their text (in place): a cell's text is what it holds. A column
    that is text in one block and numbers in another is then read as text throughout."""
    if _LEADING_ZERO_FIELD.search(body) is None:
        return
    numeric = [c for c in chunk.columns if pd.api.types.is_numeric_dtype(chunk[c].dtype)
               and not pd.api.types.is_bool_dtype(chunk[c].dtype)]
    if not numeric:
        return
    raw = pd.read_csv(io.BytesIO(body), dtype=str, usecols=numeric, **options)
    for column in numeric:
        cells = raw[column].dropna()
        if cells.str.match(r"^\s*[-+]?0\d").any():
            chunk[column] = raw[column]


def _parse_csv(source: BinaryIO, chunk_bytes: int, text: list[str],
               limits: ReadLimits = NO_LIMITS, name: str = "the file", *,
               delimiter: str = ",", encoding: str = "utf-8",
               decimal: str | None = None) -> pd.DataFrame:
    """Parse in blocks, compacting text per block; columns in ``text`` are read as strings.

    Each block is parsed on its own behind the header line, so every row is checked against
    the header (pandas' own chunked reader skips that check on each chunk's first row).
    Raises _Retype with the columns whose blocks disagree about their type.
    """
    source.seek(0)
    options: dict[str, Any] = {"sep": delimiter, "low_memory": False, "index_col": False,
                               "decimal": decimal or ".", **_decoding(encoding)}
    columns: dict[str, list[pd.Series]] = {}
    header = b""
    rows = 0
    for block, line in _blocks(source, chunk_bytes):
        nul = block.find(b"\x00")
        if nul >= 0:  # the C parser ends a cell (or a header name) at a NUL, silently
            at = line + block.count(b"\n", 0, nul)
            where = " (the header)" if at == 1 else ""
            raise InputError(f"{name} holds a NUL byte in line {at}{where}: a text CSV has "
                             "none; remove it (or export the table again) and try again",
                             code="nul-byte")
        if not header:  # the first block starts with the header line
            end = _record_end(block, last=False)
            header = block[:end] if end > 0 else block
            body, shift = block, 0
            if limits.max_columns is not None:  # before any row is parsed
                cells = next(csv.reader([header.decode(encoding, "replace")],
                                        delimiter=delimiter), [])
                limits.check(name, 0, len(cells))
        else:  # the block's first row is line 2 of what is parsed
            body, shift = header + block, line - 2
        try:
            with warnings.catch_warnings():
                # index_col=False: a first row with an extra cell is not taken as an index
                # column; pandas warns and drops the cell, so the warning is the error
                warnings.simplefilter("error", pd.errors.ParserWarning)
                chunk = pd.read_csv(io.BytesIO(body), dtype=dict.fromkeys(text, str),
                                    **options)
        except pd.errors.ParserError as exc:  # name the line of the file, not of the block
            raise pd.errors.ParserError(_shift_lines(str(exc), shift)) from exc
        except pd.errors.ParserWarning as exc:
            raise pd.errors.ParserError(
                f"more cells than the header has in line {2 + shift}") from exc
        _keep_zero_codes(chunk, body, options)
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


def _decoding(encoding: str) -> dict[str, str]:
    """pandas' decoding arguments: Windows-1252 (what detection falls back to) reads its five
    undefined bytes as Latin-1 does, so a Latin-1 file decodes too."""
    if encoding == _WINDOWS_1252:
        return {"encoding": encoding, "encoding_errors": _FALLBACK_ERRORS}
    return {"encoding": encoding}


def _header_line(source: BinaryIO) -> bytes:
    """The header line's bytes (up to its line break)."""
    source.seek(0)
    head = b""
    while True:
        block = source.read(65536)
        head += block
        end = _record_end(head, last=False)
        if end >= 0 or not block:
            break
    return head[:end] if end >= 0 else head


def _raw_header(source: BinaryIO, delimiter: str = ",", encoding: str = "utf-8") -> list[str]:
    """The header's cells as written (pandas renames a repeated name ``a`` to ``a.1`` and an
    empty cell to ``Unnamed: N``, so duplicates are only visible here)."""
    text = _decode_header(_header_line(source), encoding).rstrip("\r\n")
    return next(csv.reader([text], delimiter=delimiter), [])


def _decode_header(line: bytes, encoding: str) -> str:
    if encoding.replace("_", "-") in ("utf-8", "utf8"):
        encoding = "utf-8-sig"  # a byte-order mark is not part of the first name
    return line.decode(encoding, errors="replace")


def _refuse_duplicate_names(header: list[str], name: str) -> None:
    repeated = sorted(n for n, times in Counter(header).items() if times > 1 and n.strip())
    if repeated:
        raise InputError(
            f"{name} has duplicate column names: {', '.join(map(repr, repeated))}; give every "
            "column its own name in the header row",
            code="duplicate-columns",
        )


def read_csv(source: BinaryIO, name: str = "the file", *,
             chunk_bytes: int = CHUNK_BYTES, limits: ReadLimits = NO_LIMITS,
             delimiter: str | None = None, encoding: str | None = None,
             decimal: str | None = None) -> pd.DataFrame:
    """A DataFrame from a binary CSV stream (header row; empty cells are missing values).

    Read in chunks of about ``chunk_bytes`` of text, text columns turned into categoricals per
    chunk, so a large file needs about the final compact table plus one chunk of memory. The
    column types are those of one ``pandas.read_csv`` of the whole file: a column whose chunks
    disagree (numbers in one, text in another) is read again as text. ``limits`` are checked
    on the header and after each chunk, so a table over them stops the read early.

    ``delimiter``, ``encoding`` and ``decimal`` (see :class:`CsvOptions`): None detects the
    delimiter from the header line and the encoding from the bytes (UTF-8, with or without a
    byte-order mark; otherwise Windows-1252, which reads Latin-1 too, with a warning), and
    leaves numbers written with a decimal comma as text. How the file was read is in
    ``df.attrs["csv"]``.
    """
    options = CsvOptions.of(delimiter, encoding, decimal)
    notes: list[str] = []
    enc = options.encoding or _detect_encoding(source, name)
    sep = options.delimiter or sniff_delimiter(_decode_header(_header_line(source), enc))
    text: list[str] = []
    for _ in range(4):  # again with the disagreeing columns as text, or as Windows-1252
        try:
            df = _parse_csv(source, chunk_bytes, text, limits, name, delimiter=sep,
                            encoding=enc, decimal=options.decimal)
            _refuse_duplicate_names(_raw_header(source, sep, enc), name)
            if options.decimal:
                df = _grouped_numbers(df, options.decimal)
            df.attrs["csv"] = {"delimiter": sep, "encoding": enc, "decimal": options.decimal}
            if notes:
                df.attrs["warnings"] = notes
            return df
        except _Retype as retype:
            text = retype.columns
        except UnicodeDecodeError as exc:
            bad = _first_bad_byte(source, enc)
            where = f" (byte 0x{bad[0]:02x} at offset {bad[1]})" if bad else ""
            if options.encoding or enc != "utf-8":
                raise InputError(
                    f"{name} is not {enc} text{where}, the encoding "
                    f"{'given' if options.encoding else 'its byte-order mark says'}; give its "
                    "encoding (--encoding, the API's encoding field), or save it as UTF-8",
                    code="bad-encoding") from exc
            # not UTF-8: the one-byte Western encoding spreadsheets write (read as such, said)
            enc = _WINDOWS_1252
            sep = sniff_delimiter(_decode_header(_header_line(source), enc))
            notes.append(f"{name} is not UTF-8{where}: read as Windows-1252 (Latin-1); if "
                         "it is in another encoding, give it (--encoding, the API's encoding "
                         "field)")
        except pd.errors.EmptyDataError as exc:
            raise InputError(f"{name} has no columns", code="empty-table") from exc
        except (pd.errors.ParserError, csv.Error, ValueError) as exc:
            raise InputError(
                f"{name} is not a well-formed CSV: {str(exc).strip()} (read with "
                f"{_describe(options, sep, enc)}); check quoting and that every row has as "
                f"many cells as the header, or {OVERRIDE}",
                code="malformed-csv",
            ) from exc
    raise AssertionError("columns read as text cannot disagree")  # pragma: no cover


_UTF_16_32_BOMS = (codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE, codecs.BOM_UTF16_LE,
                   codecs.BOM_UTF16_BE)


def _detect_encoding(source: BinaryIO, name: str) -> str:
    """``utf-8-sig`` behind a UTF-8 byte-order mark, ``utf-8`` otherwise (a parse that meets
    a byte that is not UTF-8 falls back to Windows-1252); refused: UTF-16/32 and NUL bytes."""
    source.seek(0)
    head = source.read(65536)
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith(_UTF_16_32_BOMS) or b"\x00" in head:
        what = ("UTF-16 or UTF-32 text" if head.startswith(_UTF_16_32_BOMS)
                else "not text (it holds NUL bytes: UTF-16 without a byte-order mark, or a "
                "binary file)")
        raise InputError(f"{name} is {what}; synthgen reads UTF-8 and one-byte encodings "
                         "(Windows-1252, Latin-1, ...): save it as UTF-8", code="bad-encoding")
    return "utf-8"


def _number_pattern(decimal: str) -> re.Pattern[str]:
    group = "\\." if decimal == "," else ","
    dec = re.escape(decimal)
    return re.compile(rf"^[+-]?(\d{{1,3}}({group}\d{{3}})+|\d+)({dec}\d+)?$")


def _grouped_numbers(df: pd.DataFrame, decimal: str) -> pd.DataFrame:
    """Text columns whose every value is a number written with ``decimal`` (and the other mark
    between groups of three digits: ``1.234,50``) as numbers. Decided per column from its
    distinct values, as a parser types a column; pandas' own ``thousands`` is not used: it
    would read a date ``01.02.2020`` as the number 1022020."""
    pattern = _number_pattern(decimal)
    thousands = "," if decimal == "." else "."
    for column in df.columns:
        values = df[column]
        if not isinstance(values.dtype, pd.CategoricalDtype) and values.dtype != object:
            continue
        labels = (values.cat.categories if isinstance(values.dtype, pd.CategoricalDtype)
                  else pd.Index(values.dropna().unique()))
        if labels.empty or not all(isinstance(v, str) and pattern.match(v.strip())
                                   for v in labels):
            continue
        numbers = {v: float(v.strip().replace(thousands, "").replace(decimal, "."))
                   for v in labels}
        converted = values.astype(object).map(numbers).astype("float64")
        whole = not any(decimal in v for v in labels) and not converted.isna().any()
        df[column] = converted.astype("int64") if whole else converted
    return df


def read_csv_bytes(raw: bytes, name: str = "the file", *, chunk_bytes: int = CHUNK_BYTES,
                   categorical_text: bool = False, limits: ReadLimits = NO_LIMITS,
                   delimiter: str | None = None, encoding: str | None = None,
                   decimal: str | None = None) -> pd.DataFrame:
    """A DataFrame from CSV bytes (header row; empty cells are missing values).

    Parsed in chunks like :func:`read_csv`. Text columns come back as object columns unless
    ``categorical_text``: the service's formula-cell check (``find_formula_cells``) only looks
    at object and string columns. Each cell then refers to its column's one copy of the string
    (8 bytes a cell), not to a string of its own.
    """
    if not raw or raw.isspace():  # (not raw.strip(): no copy of a large upload)
        raise InputError(f"{name} is empty; give a CSV with a header row and data rows",
                         code="empty-table")
    df = read_csv(io.BytesIO(raw), name, chunk_bytes=chunk_bytes, limits=limits,
                  delimiter=delimiter, encoding=encoding, decimal=decimal)
    if categorical_text:
        return df
    attrs = dict(df.attrs)
    df = df.apply(lambda c: c.astype(object) if isinstance(c.dtype, pd.CategoricalDtype) else c)
    df.attrs.update(attrs)
    return df


def read_parquet_bytes(raw: bytes, name: str = "the file", *,
                       limits: ReadLimits = NO_LIMITS) -> pd.DataFrame:
    # text as object columns, for the service's formula-cell check (see read_csv_bytes)
    return _read_parquet(pa.BufferReader(raw), name, categorical_text=False,
                         limits=limits.for_file(len(raw)))


PARQUET_BATCH_ROWS = 64 * 1024
_TEXT_TYPES = (pa.types.is_string, pa.types.is_large_string, pa.types.is_binary,
               pa.types.is_large_binary, pa.types.is_string_view, pa.types.is_binary_view)


def _is_text(dtype: pa.DataType) -> bool:
    return any(test(dtype) for test in _TEXT_TYPES)


def _footer_bytes(parquet: pq.ParquetFile) -> int:
    """What the footer says the table decodes to, at least: per row group, its uncompressed
    pages, and never less than 8 bytes a cell (run-length pages of zeros or nulls are a few
    bytes for millions of cells). Dictionary-encoded text can decode to far more (each cell
    repeats a dictionary entry): :func:`_batch_bytes` counts that while decoding."""
    meta = parquet.metadata
    width = sum(max(8, col.length or 0) for col in parquet.schema)
    return sum(max(meta.row_group(i).total_byte_size, meta.row_group(i).num_rows * width)
               for i in range(meta.num_row_groups))


def _batch_bytes(batch: pa.RecordBatch) -> int:
    """What a decoded batch would take as plain columns: 8 bytes a cell, plus the text of
    string and binary cells, counted from the dictionary's lengths and the indices (the text
    itself is never expanded)."""
    total = 0
    for column in batch.columns:
        total += 8 * len(column)
        if isinstance(column, pa.DictionaryArray) and _is_text(column.dictionary.type):
            lengths = pc.binary_length(column.dictionary)
            total += int(pc.sum(lengths.take(column.indices)).as_py() or 0)
        elif _is_text(column.type):
            total += int(pc.sum(pc.binary_length(column)).as_py() or 0)
        else:
            total += max(column.nbytes - 8 * len(column), 0)
    return total


def _read_parquet(source: str | pa.NativeFile, name: str, *, categorical_text: bool = True,
                  limits: ReadLimits = NO_LIMITS) -> pd.DataFrame:
    """Read a Parquet file within ``limits``: its footer (rows, columns, a floor of the decoded
    size) is checked before any page is decoded; then text columns are decoded as dictionaries
    (each distinct string once, as the CSV reader keeps them) in batches whose plain size is
    counted, so a file whose cells repeat a long dictionary entry stops at the limit without
    its text ever being expanded in memory."""
    try:
        parquet = pq.ParquetFile(source)
        meta = parquet.metadata
        limits.check(name, meta.num_rows, meta.num_columns, _footer_bytes(parquet))
        arrow_schema = parquet.schema_arrow
        nested = [f.name for f in arrow_schema if pa.types.is_nested(f.type)]
        if nested:
            raise InputError(f"{name} has nested columns (lists, structs or maps): "
                             f"{', '.join(map(repr, nested[:5]))}; flatten them into plain "
                             "columns and upload again", code="unsupported-column")
        text = [f.name for f in arrow_schema if _is_text(f.type)]
        if text:  # open again, reading text columns as dictionaries
            if isinstance(source, pa.NativeFile):
                source.seek(0)
            parquet = pq.ParquetFile(source, read_dictionary=text)
        batches = []
        rows = decoded = 0
        for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS):
            rows += batch.num_rows
            decoded += _batch_bytes(batch)
            limits.check(name, rows, batch.num_columns, decoded)
            batches.append(batch)
        table = pa.Table.from_batches(batches, schema=parquet.schema_arrow)
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"{name} is not a readable Parquet file: {exc}",
                         code="malformed-parquet") from exc
    # text columns as categoricals, as the CSV reader gives them (each string kept once)
    df = table.to_pandas()
    if not categorical_text:  # object columns whose cells share each distinct string
        for column in text:
            if column in df.columns:  # (not a pandas index stored as a column)
                df[column] = df[column].astype(object)
    return df


def read_table(path: str | Path, *, max_bytes: int = DEFAULT_MAX_BYTES,
               chunk_bytes: int = CHUNK_BYTES, limits: ReadLimits = NO_LIMITS,
               min_rows: int = MIN_ROWS, delimiter: str | None = None,
               encoding: str | None = None, decimal: str | None = None) -> pd.DataFrame:
    """Read a CSV or Parquet file (by its suffix) and check it is usable for synthesis
    (``min_rows``: 1 for a file that is not trained on, such as seed rows).

    The file is streamed, never held whole in memory (see :func:`read_csv`, which also says
    what ``delimiter``, ``encoding`` and ``decimal`` do; a Parquet file takes none of them).
    """
    options = CsvOptions.of(delimiter, encoding, decimal)
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
        refuse_csv_options(options, path.name)
        df = _read_parquet(str(path), path.name, limits=limits.for_file(size))
    else:
        with open(path, "rb") as handle:
            if size <= 65536 and not handle.read().strip():
                raise InputError(f"{path.name} is empty; give a CSV with a header row and data "
                                 "rows", code="empty-table")
            df = read_csv(handle, path.name, chunk_bytes=chunk_bytes, limits=limits,
                          delimiter=options.delimiter, encoding=options.encoding,
                          decimal=options.decimal)
    return check_table(df, path.name, min_rows=min_rows)


def refuse_csv_options(options: CsvOptions, name: str) -> None:
    """A Parquet file has its own types: a delimiter, encoding or decimal mark given for one
    is a mistake (an ``invalid-argument`` InputError)."""
    if options.given:
        raise InputError(f"{name} is a Parquet file; {', '.join(options.given)} only apply "
                         "to CSV files", code="invalid-argument")


def check_table(df: pd.DataFrame, name: str = "the table", *,
                min_rows: int = MIN_ROWS) -> pd.DataFrame:
    """Refuse tables that cannot be synthesised, with a message that says why."""
    if df.shape[1] == 0:
        raise InputError(f"{name} has no columns", code="empty-table")
    if len(df) == 0:
        raise InputError(f"{name} has a header but no data rows", code="empty-table")
    if len(df) < min_rows:
        raise InputError(
            f"{name} has {len(df)} row(s); differentially private synthesis needs at least "
            f"{MIN_ROWS} (with fewer, the noise is all there is)",
            code="too-few-rows",
        )
    names = [str(c) for c in df.columns]
    with_nul = [n for n in names if "\x00" in n]
    if with_nul:
        raise InputError(f"{name} has a column name holding a NUL character: "
                         f"{with_nul[0][:100]!r}; rename the column", code="nul-byte")
    _refuse_duplicate_names(names, name)
    if _unnamed(names[0]) and len(names) > 1:
        # DataFrame.to_csv() writes the index as a first column with an empty header cell
        # (read back as "Unnamed: 0"): an index, not data. Decided from the header alone.
        df = df.iloc[:, 1:]
        names = names[1:]
        warning = (f"the first column of {name} has no name: read as a row index "
                   "(as pandas writes one) and dropped, never learned")
        df.attrs["warnings"] = [*df.attrs.get("warnings", []), warning]
    unnamed = [i + 1 for i, n in enumerate(names) if _unnamed(n)]
    if unnamed:
        raise InputError(
            f"{name} has column(s) without a name at position(s) "
            f"{', '.join(map(str, unnamed))} (after any index column); give every column a "
            "header", code="malformed-csv")
    df.columns = names
    return df


_UNNAMED = re.compile(r"^Unnamed: \d+(\.\d+)?$")


def _unnamed(name: str) -> bool:
    """An empty header cell, or the name pandas gives one ("Unnamed: 3")."""
    return not name.strip() or bool(_UNNAMED.match(name))


def read_warnings(df: pd.DataFrame) -> list[str]:
    """What reading and checking ``df`` warned about (an index column dropped)."""
    return list(df.attrs.get("warnings", []))


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


def _fixed_decimals(df: pd.DataFrame, decimals: dict[str, int]) -> pd.DataFrame:
    """Float columns a model writes with a fixed number of decimals, as that text (12.50,
    not 12.5); empty where null."""
    columns = [c for c in decimals if c in df.columns
               and pd.api.types.is_float_dtype(df[c].dtype)]
    if not columns:
        return df
    df = df.copy()
    for c in columns:
        x = df[c].to_numpy(dtype=np.float64, na_value=np.nan)
        text = np.char.mod(f"%.{int(decimals[c])}f", np.nan_to_num(x)).astype(object)
        text[np.isnan(x)] = None
        df[c] = text
    return df


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
            _fixed_decimals(escape_formulas(chunk), chunk.attrs.get("decimals", {})).to_csv(
                handle, index=False, header=(i == 0))
            rows += len(chunk)
    except BaseException:
        if close:  # a file of ours: no partial output left behind (e.g. too rare a condition)
            handle.close()
            Path(target).unlink(missing_ok=True)  # type: ignore[arg-type]
        raise
    finally:
        if close:
            handle.close()
    return rows
