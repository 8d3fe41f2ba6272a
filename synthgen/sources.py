"""Where a table comes from and where the synthetic table goes: files, fsspec URLs
(``s3://bucket/path/``), SQL tables and read-only queries (SQLAlchemy).

Every source is read in chunks within the same :class:`~synthgen.io.ReadLimits` as a file, and
every failure is an :class:`~synthgen.errors.InputError` whose message never holds a password:
:func:`mask` hides it in a URL and :func:`scrub` removes it from any text a driver wrote.

A database's column types are the owner's declared facts, not a read of the rows: a ``DATE`` is a
date, a ``BOOLEAN`` a boolean, a ``NUMERIC(10,2)`` a number with two decimals, an enum a
categorical with its labels, a primary key an identifier. :func:`public_schema` turns them into a
declared schema (no budget); a user's schema is merged over it (:func:`merge_schemas`). Nothing
else about the rows (bounds, frequencies, nulls in a nullable column) is taken from the database.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import pandas as pd

from synthgen.errors import InputError
from synthgen.io import (
    DEFAULT_MAX_BYTES,
    MIN_ROWS,
    NO_LIMITS,
    ReadLimits,
    _combine,
    _compact,
    check_table,
    detect_format,
    read_csv,
    read_table,
    write_csv,
)
from synthgen.schema import ColumnKind, ColumnSpec, TableSchema

CHUNK_ROWS = 50_000
CONNECT_TIMEOUT_S = 10
WRITE_MODES = ("fail", "replace", "append")
_FILE_SUFFIXES = (".csv", ".parquet", ".pq")
_READ_ONLY_START = re.compile(r"^\s*(select|with|values|table)\b", re.IGNORECASE)
_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.\-]*)://")


# ----------------------------------------------------------------------------- secrets


def mask(url: str) -> str:
    """``url`` with its password (and any ``?password=`` style parameter) as ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<an unparsable URL>"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:***@{host}" if ":" in userinfo else f"{user}@{host}"
    query = re.sub(r"(?i)\b(password|secret|token|key|sig|signature)=[^&]*", r"\1=***",
                   parts.query)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def secrets_of(url: str) -> list[str]:
    """The secret parts of ``url`` (its password, secret-like query parameters), to scrub from
    any message a driver writes."""
    found: list[str] = []
    try:
        parts = urlsplit(url)
        if parts.password:
            found.append(parts.password)
            from urllib.parse import unquote

            found.append(unquote(parts.password))
        found += re.findall(r"(?i)\b(?:password|secret|token|key|sig|signature)=([^&]+)",
                            parts.query)
    except ValueError:
        pass
    return sorted({s for s in found if s}, key=len, reverse=True)


def scrub(text: str, url: str) -> str:
    """``text`` with ``url``'s secrets replaced by ``***`` (the URL itself masked first)."""
    text = text.replace(url, mask(url))
    for secret in secrets_of(url):
        text = text.replace(secret, "***")
    return text


class SourceError(InputError):
    """A source or destination that cannot be reached or read."""

    code = "source-unavailable"


def _failed(what: str, url: str, exc: BaseException, code: str = "source-unavailable"
            ) -> SourceError:
    detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    first = detail[0] if detail else type(exc).__name__
    return SourceError(scrub(f"{what} {mask(url)}: {first}", url), code=code)


# ----------------------------------------------------------------------------- what a location is


def is_url(location: str) -> bool:
    """Whether ``location`` is a URL (``scheme://...``) rather than a local path."""
    return bool(_SCHEME.match(location))


def is_sql_url(location: str) -> bool:
    """Whether ``location`` names a database SQLAlchemy has a dialect for."""
    if not is_url(location):
        return False
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        make_url(_with_driver(location)).get_dialect()
    except (ArgumentError, NoSuchModuleError, ValueError, ImportError):
        return False
    return True


def _with_driver(url: str) -> str:
    """``postgresql://`` as SQLAlchemy's psycopg (3) dialect when psycopg2 is not installed;
    ``mysql://`` and ``mariadb://`` through PyMySQL when mysqlclient is not."""
    scheme, _, rest = url.partition("://")
    if scheme in ("postgresql", "postgres"):
        try:
            import psycopg2  # noqa: F401
        except ImportError:
            return "postgresql+psycopg://" + rest
        return "postgresql://" + rest
    if scheme in ("mysql", "mariadb"):
        try:
            import MySQLdb  # noqa: F401
        except ImportError:
            return f"{scheme}+pymysql://{rest}"
    return url


def display_name(location: str, *, table: str | None = None, query: str | None = None) -> str:
    """How messages and reports name a source: the masked URL and its table, or "a query"."""
    if not is_url(location):
        return Path(location).name
    shown = mask(location)
    if table:
        return f"{table} in {shown}"
    if query:
        return f"a query on {shown}"
    return shown


# ----------------------------------------------------------------------------- reading


@dataclass
class SourceTable:
    """A table read from a source, with what the source declares about it."""

    frame: pd.DataFrame
    name: str
    # the declared schema from the database's column types (None: a file, nothing declared)
    schema: TableSchema | None = None
    # SQLAlchemy types of the columns, to create a destination table like the source
    types: dict[str, Any] = field(default_factory=dict)
    dialect: str | None = None


def read_source(location: str, *, table: str | None = None, query: str | None = None,
                limits: ReadLimits = NO_LIMITS, max_bytes: int = DEFAULT_MAX_BYTES,
                min_rows: int = MIN_ROWS, chunk_rows: int = CHUNK_ROWS,
                **csv_options: str | None) -> SourceTable:
    """Read a local file, an fsspec URL (a file or a folder of CSV/Parquet files) or a SQL
    table/query, within ``limits`` (``max_bytes``: the size of a file or of all files).
    ``csv_options``: a CSV's ``delimiter``, ``encoding``, ``decimal`` (see
    :func:`synthgen.io.read_csv`)."""
    if table is not None and query is not None:
        raise InputError("give a table or a query, not both", code="invalid-argument")
    if is_sql_url(location):
        if (table is None) == (query is None):
            raise InputError(f"{mask(location)} is a database: give --table NAME or "
                             "--query 'SELECT ...'", code="invalid-argument")
        return read_sql(location, table=table, query=query, limits=limits, min_rows=min_rows,
                        chunk_rows=chunk_rows)
    if table is not None or query is not None:
        raise InputError(f"--table and --query apply to a database URL, not to "
                         f"{display_name(location)}", code="invalid-argument")
    if is_url(location):
        return SourceTable(read_fsspec(location, limits=limits, max_bytes=max_bytes,
                                       min_rows=min_rows, **csv_options),
                           display_name(location))
    frame = read_table(location, max_bytes=max_bytes, limits=limits, min_rows=min_rows,
                       **csv_options)  # type: ignore[arg-type]
    return SourceTable(frame, Path(location).name)


def _engine(url: str) -> Any:
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    full = _with_driver(url)
    args: dict[str, Any] = {}
    if full.startswith("postgresql"):
        args["connect_timeout"] = CONNECT_TIMEOUT_S
    elif full.startswith(("mysql", "mariadb")):
        args["connect_timeout"] = CONNECT_TIMEOUT_S
    try:
        # NullPool: a connection is closed when released (a read-only setting never leaks)
        return create_engine(full, poolclass=NullPool, connect_args=args,
                             hide_parameters=True)
    except Exception as exc:  # a bad URL or a missing driver
        raise _failed("cannot use", url, exc, code="invalid-argument") from None


def _split_name(table: str) -> tuple[str | None, str]:
    schema, _, name = table.rpartition(".")
    if not name.strip():
        raise InputError(f"--table {table!r} is not a table name", code="invalid-argument")
    return (schema or None), name


def check_query(query: str) -> str:
    """The query without a trailing ``;``, or an error when it is not one read-only statement.
    (The database enforces it too: the query runs in a read-only transaction.)"""
    text = query.strip().rstrip(";").strip()
    if not text or not _READ_ONLY_START.match(text) or ";" in text:
        raise InputError("--query must be one read-only SELECT statement (SELECT, WITH, "
                         "VALUES or TABLE, no ';' inside)", code="invalid-query")
    return text


def read_sql(url: str, *, table: str | None = None, query: str | None = None,
             limits: ReadLimits = NO_LIMITS, min_rows: int = MIN_ROWS,
             chunk_rows: int = CHUNK_ROWS) -> SourceTable:
    """A table or a read-only query from a database, streamed in chunks of ``chunk_rows``
    (a server-side cursor where the driver has one), within ``limits``."""
    from sqlalchemy import MetaData, Table, select, text
    from sqlalchemy.exc import NoSuchTableError, SQLAlchemyError

    name = display_name(url, table=table, query=query)
    engine = _engine(url)
    dialect = engine.dialect.name
    try:
        with engine.connect() as conn:
            _read_only(conn, dialect)
            stream = conn.execution_options(stream_results=True, max_row_buffer=chunk_rows)
            keys: list[str] = []
            if table is not None:
                schema, bare = _split_name(table)
                try:
                    reflected = Table(bare, MetaData(), schema=schema, autoload_with=conn)
                except NoSuchTableError:
                    raise InputError(f"there is no table {table!r} in {mask(url)}",
                                     code="not-found") from None
                types = {c.name: c.type for c in reflected.columns}
                declared = public_schema(types, keys=[c.name for c in reflected.primary_key],
                                         not_null=[c.name for c in reflected.columns
                                                   if not c.nullable])
                limits.check(name, 0, len(types))
                chosen = select(*_as_read(reflected.columns, dialect))
                if _copy_driver(conn) is not None:
                    frame = _copy_frame(conn, chosen, types, limits, name, chunk_rows)
                    conn.rollback()
                    return SourceTable(check_table(frame, name, min_rows=min_rows), name,
                                       declared, types, dialect)
                result = stream.execute(chosen)
            else:
                statement = check_query(query or "")
                result = stream.execute(text(statement))
                keys = list(result.keys())
                limits.check(name, 0, len(keys))
                types = _query_types(conn, dialect, result, keys)
                declared = public_schema(types)
            frame = _frame_of(result, types, limits, name, chunk_rows)
            result.close()
            conn.rollback()  # nothing to keep: the read changed nothing
    except InputError:
        raise
    except SQLAlchemyError as exc:
        raise _failed(f"cannot read {table!r} from" if table else "the query failed on",
                      url, exc) from None
    finally:
        engine.dispose()
    frame = check_table(frame, name, min_rows=min_rows)
    return SourceTable(frame, name, declared, types, dialect)


_NULL = "\\N"  # how COPY writes NULL below (an empty string stays an empty string)


def _copy_frame(conn: Any, statement: Any, types: dict[str, Any], limits: ReadLimits,
                name: str, chunk_rows: int) -> pd.DataFrame:
    """PostgreSQL: the table through ``COPY (SELECT ...) TO STDOUT`` as CSV (the server
    formats the values, pandas' C parser reads them; 4-5x faster than rows through the
    driver), spooled to a temporary file within ``limits.max_bytes``, parsed in chunks of
    ``chunk_rows`` with each column's type from the database, never guessed from its cells."""
    import tempfile

    from sqlalchemy import types as t

    sql = str(statement.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
    cap = limits.max_bytes if limits.max_bytes is not None else DEFAULT_MAX_BYTES
    raw = conn.connection.driver_connection
    with tempfile.TemporaryFile() as spool:
        size = 0
        with raw.cursor() as cursor, cursor.copy(
                f"COPY ({sql}) TO STDOUT WITH (FORMAT csv, HEADER, NULL '{_NULL}')") as copy:
            for block in copy:
                size += len(block)
                if size > cap:  # the text is at least as large as the decoded table's cells
                    limits.check(name, 0, 0, size)
                spool.write(block)
        spool.seek(0)
        keys = list(types)
        parts: dict[str, list[pd.Series]] = {k: [] for k in keys}
        reader = pd.read_csv(spool, dtype=str, keep_default_na=False, na_values=[_NULL],
                             chunksize=chunk_rows, encoding="utf-8")
        rows = 0
        for chunk in reader:
            rows += len(chunk)
            limits.check(name, rows, len(keys))
            for key in keys:
                parts[key].append(_text_column(chunk[key], types[key], t))
    out = {}
    for key in keys:
        pieces = parts.pop(key)
        combined = _combine(pieces) if pieces else pd.Series([], dtype=object)
        out[key] = combined if combined is not None else pd.concat(
            [p.astype(object) for p in pieces], ignore_index=True)
    return pd.DataFrame(out, copy=False)


def _text_column(values: pd.Series, sql_type: Any, t: Any) -> pd.Series:
    """One chunk of a column as COPY wrote it (text, NaN for NULL) in its SQL type's dtype."""
    values = values.reset_index(drop=True)
    if isinstance(sql_type, t.Boolean):
        return values.map({"t": True, "f": False}).astype("boolean")
    if isinstance(sql_type, t.Date | t.DateTime):
        codes, labels = pd.factorize(values)  # each distinct text parsed once
        if len(labels) == 0:
            return pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns]")
        stamps = pd.to_datetime(pd.Series(labels), utc=True, errors="coerce",
                                format="ISO8601").dt.tz_convert(None)
        return pd.Series(stamps.to_numpy()[codes], dtype="datetime64[ns]").where(codes >= 0)
    if isinstance(sql_type, t.Integer | t.Numeric | t.Float):
        series = pd.to_numeric(values, errors="coerce").astype("float64")
        if isinstance(sql_type, t.Integer) and not series.isna().any():
            return series.astype("int64")
        return series
    if values.isna().all():
        return values.astype("float64")  # an all-null chunk, as a CSV reader gives it
    return values.astype("category")


def _read_only(conn: Any, dialect: str) -> None:
    """Make the connection's transaction read-only where the database can enforce it."""
    if dialect == "postgresql":
        conn.exec_driver_sql("SET TRANSACTION READ ONLY")
    elif dialect == "sqlite":
        conn.exec_driver_sql("PRAGMA query_only = ON")
    elif dialect in ("mysql", "mariadb"):
        conn.exec_driver_sql("SET SESSION TRANSACTION READ ONLY")


# PostgreSQL's built-in type ids (pg_type.oid), for a query's columns
_PG_TYPES = {16: "boolean", 20: "bigint", 21: "smallint", 23: "integer", 700: "real",
             701: "double", 1700: "numeric", 1082: "date", 1114: "timestamp",
             1184: "timestamptz", 25: "text", 1043: "varchar", 1042: "char"}


def _query_types(conn: Any, dialect: str, result: Any, keys: list[str]) -> dict[str, Any]:
    """The SQLAlchemy types of a query's columns, from the driver's description of the result
    (PostgreSQL: type ids, numeric precision and scale, enum labels). Other databases say too
    little about a query's columns: none declared."""
    if dialect != "postgresql":
        return {}
    from sqlalchemy import text
    from sqlalchemy import types as t
    from sqlalchemy.dialects.postgresql import ENUM

    description = result.cursor.description or []
    out: dict[str, Any] = {}
    unknown: dict[int, list[str]] = {}
    for name, column in zip(keys, description, strict=False):
        oid = int(column.type_code)
        kind = _PG_TYPES.get(oid)
        if kind is None:
            unknown.setdefault(oid, []).append(name)
            continue
        scale = getattr(column, "scale", None)
        precision = getattr(column, "precision", None)
        out[name] = {
            "boolean": t.Boolean(), "bigint": t.BigInteger(), "smallint": t.SmallInteger(),
            "integer": t.Integer(), "real": t.REAL(), "double": t.Double(),
            "numeric": t.Numeric(precision, scale), "date": t.Date(),
            "timestamp": t.DateTime(), "timestamptz": t.DateTime(timezone=True),
            "text": t.Text(), "varchar": t.String(), "char": t.String(),
        }[kind]
    if unknown:  # enums: their labels are the type's definition
        rows = conn.execute(text(
            "SELECT t.oid, t.typname, e.enumlabel FROM pg_type t JOIN pg_enum e "
            "ON e.enumtypid = t.oid WHERE t.oid = ANY(:oids) ORDER BY t.oid, e.enumsortorder"
        ), {"oids": list(unknown)}).all()
        labels: dict[int, tuple[str, list[str]]] = {}
        for oid, typname, label in rows:
            labels.setdefault(int(oid), (typname, []))[1].append(label)
        for oid, names in unknown.items():
            if oid in labels:
                typname, values = labels[oid]
                for name in names:
                    out[name] = ENUM(*values, name=typname, create_type=True)
    return out


def _frame_of(result: Any, types: dict[str, Any], limits: ReadLimits, name: str,
              chunk_rows: int) -> pd.DataFrame:
    """The result's rows as one compact DataFrame, built chunk by chunk (text columns as
    categoricals), the limits checked after each chunk."""
    keys = list(result.keys())
    parts: dict[str, list[pd.Series]] = {k: [] for k in keys}
    rows = 0
    for chunk in result.partitions(chunk_rows):
        rows += len(chunk)
        limits.check(name, rows, len(keys))
        columns = list(zip(*chunk, strict=True)) if chunk else [()] * len(keys)
        for key, values in zip(keys, columns, strict=True):
            parts[key].append(_column(list(values), types.get(key)))
        del chunk, columns
    out = {}
    for key in keys:
        pieces = parts.pop(key)
        if not pieces:
            out[key] = pd.Series([], dtype=object)
            continue
        combined = _combine(pieces)
        out[key] = combined if combined is not None else pd.concat(
            [p.astype(object) for p in pieces], ignore_index=True)
    return pd.DataFrame(out, copy=False)


def _as_read(columns: Any, dialect: str) -> list[Any]:
    """The columns to select: a ``NUMERIC`` as a double (the database converts it, not a
    Python ``Decimal`` per cell; its scale is kept in the type, and applied on output) where
    the database has that cast (MySQL and MariaDB have no ``CAST(... AS FLOAT(53))``: their
    ``Decimal`` values are converted in :func:`_column`)."""
    from sqlalchemy import Float, cast
    from sqlalchemy import types as t

    if dialect not in ("postgresql", "sqlite"):
        return list(columns)
    return [cast(c, Float(53)).label(c.name)
            if isinstance(c.type, t.Numeric) and not isinstance(c.type, t.Float) else c
            for c in columns]


def is_boolean(sql_type: Any) -> bool:
    """A ``BOOLEAN``, or MySQL/MariaDB's ``TINYINT(1)`` (what their ``BOOLEAN`` is: the
    convention their drivers and tools follow; a value other than 0 reads as true)."""
    from sqlalchemy import types as t

    return isinstance(sql_type, t.Boolean) or (
        isinstance(sql_type, t.Integer) and type(sql_type).__name__ == "TINYINT"
        and getattr(sql_type, "display_width", None) == 1)


def _column(values: list[Any], sql_type: Any) -> pd.Series:
    """One chunk of one column in the dtype its SQL type gives (as a file reader would)."""
    from sqlalchemy import types as t

    if isinstance(sql_type, t.Boolean):
        return pd.Series(pd.array(values, dtype="boolean"))
    if is_boolean(sql_type):  # TINYINT(1): 0, 1 (or any other number), None
        return pd.Series(pd.array([None if v is None else bool(v) for v in values],
                                  dtype="boolean"))
    if isinstance(sql_type, t.Date) and not isinstance(sql_type, t.DateTime):
        try:  # date objects and None: numpy converts them at C speed
            return pd.Series(np.array(values, dtype="datetime64[D]").astype("datetime64[ns]"))
        except (TypeError, ValueError):
            pass
    if isinstance(sql_type, t.Date | t.DateTime):
        stamps = pd.to_datetime(pd.Series(values, dtype=object), utc=True, errors="coerce")
        return stamps.dt.tz_convert(None)
    if isinstance(sql_type, t.Integer | t.Numeric | t.Float):
        try:
            series = pd.Series(np.array(values, dtype="float64"))  # None -> NaN
        except (TypeError, ValueError):
            series = pd.Series([None if v is None else float(v) for v in values],
                               dtype="float64")
        if isinstance(sql_type, t.Integer) and not series.isna().any():
            return series.astype("int64")
        return series
    series = pd.Series(values, dtype=object)
    if any(v is not None and not isinstance(v, str) for v in values):  # uuid, json, bytes
        series = series.map(lambda v: v if v is None or isinstance(v, str) else str(v))
    if series.isna().all():
        return series.astype("float64")  # an all-null chunk, as a CSV reader gives it
    return _compact(series)


def public_schema(types: dict[str, Any], *, keys: Iterable[str] = (),
                  not_null: Iterable[str] = ()) -> TableSchema | None:
    """The declared schema a database's column types give (see the module's docstring); None
    when they declare nothing. Text columns stay ``auto``: their values are not public."""
    from sqlalchemy import types as t

    keys, not_null = set(keys), set(not_null)
    specs = []
    for name, sql_type in types.items():
        nullable = False if name in not_null else None
        if name in keys:
            specs.append(ColumnSpec(name=name, kind=ColumnKind.DROP, nullable=None))
        elif isinstance(sql_type, t.Enum) and sql_type.enums:
            specs.append(ColumnSpec(name=name, kind=ColumnKind.CATEGORICAL,
                                    categories=list(sql_type.enums), nullable=nullable))
        elif is_boolean(sql_type):
            specs.append(ColumnSpec(name=name, kind=ColumnKind.BOOLEAN, nullable=nullable))
        elif isinstance(sql_type, t.Date | t.DateTime):
            specs.append(ColumnSpec(name=name, kind=ColumnKind.DATETIME, nullable=nullable))
        elif isinstance(sql_type, t.Integer) or (
                isinstance(sql_type, t.Numeric) and not isinstance(sql_type, t.Float)
                and sql_type.scale == 0):
            specs.append(ColumnSpec(name=name, kind=ColumnKind.INTEGER, nullable=nullable))
        elif isinstance(sql_type, t.Numeric | t.Float):  # NUMERIC(p, s), REAL, DOUBLE
            specs.append(ColumnSpec(name=name, kind=ColumnKind.CONTINUOUS, nullable=nullable))
    return TableSchema(columns=specs) if specs else None


def merge_schemas(public: TableSchema | None, user: TableSchema | None) -> TableSchema | None:
    """The source's declared schema with the user's columns over it (the user's spec of a
    column replaces the source's)."""
    if public is None or user is None:
        return user or public
    mine = {c.name: c for c in user.columns}
    columns = [mine.pop(c.name, c) for c in public.columns]
    return TableSchema(columns=columns + list(mine.values()))


def decimals(types: dict[str, Any]) -> dict[str, int]:
    """Columns whose SQL type fixes their decimals (``NUMERIC(p, s)``, s > 0)."""
    from sqlalchemy import types as t

    return {name: int(ty.scale) for name, ty in types.items()
            if isinstance(ty, t.Numeric) and not isinstance(ty, t.Float)
            and isinstance(ty.scale, int) and ty.scale > 0}


def conform(frame: pd.DataFrame, types: dict[str, Any]) -> pd.DataFrame:
    """Synthetic rows in the source's column types (post-processing with public facts only):
    numbers rounded to a ``NUMERIC``'s decimals, a ``DATE`` without a time of day."""
    from sqlalchemy import types as t

    if not types:
        return frame
    out = frame.copy(deep=False)
    for name, places in decimals(types).items():
        if name in out and pd.api.types.is_float_dtype(out[name].dtype):
            out[name] = out[name].round(places)
    for name, ty in types.items():
        if (name in out and isinstance(ty, t.Date) and not isinstance(ty, t.DateTime)
                and pd.api.types.is_datetime64_any_dtype(out[name].dtype)):
            out[name] = out[name].dt.floor("D")
    return out


# ----------------------------------------------------------------------------- fsspec files


def _filesystem(url: str) -> tuple[Any, str]:
    import fsspec

    try:
        fs, path = fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as exc:
        raise SourceError(scrub(f"cannot open {mask(url)}: {exc}", url),
                          code="invalid-argument") from None
    return fs, path


def _files_of(fs: Any, path: str, url: str) -> list[str]:
    """The CSV/Parquet files a URL names: the file itself, or a folder's files in name order."""
    try:
        if fs.isdir(path):
            found = sorted(p for p in fs.find(path) if p.lower().endswith(_FILE_SUFFIXES))
            if not found:
                raise SourceError(f"{mask(url)} holds no .csv or .parquet file",
                                  code="not-found")
            return found
        if not fs.exists(path):
            raise SourceError(f"{mask(url)} does not exist", code="not-found")
    except SourceError:
        raise
    except Exception as exc:  # the store's own errors: credentials, network
        raise _failed("cannot list", url, exc) from None
    return [path]


def read_fsspec(url: str, *, limits: ReadLimits = NO_LIMITS,
                max_bytes: int = DEFAULT_MAX_BYTES, min_rows: int = MIN_ROWS,
                **csv_options: str | None) -> pd.DataFrame:
    """A CSV/Parquet file, or a folder of them with the same columns, at an fsspec URL."""
    from synthgen.io import _read_parquet

    fs, path = _filesystem(url)
    files = _files_of(fs, path, url)
    try:
        sizes = [int(fs.size(f) or 0) for f in files]
    except Exception as exc:
        raise _failed("cannot read", url, exc) from None
    if sum(sizes) > max_bytes:
        raise InputError(f"{mask(url)} is {sum(sizes):,} bytes, over the limit of "
                         f"{max_bytes:,}", code="too-large")
    frames: list[pd.DataFrame] = []
    rows = 0
    name = display_name(url)
    for file in files:
        shown = file.rsplit("/", 1)[-1]
        left = ReadLimits(
            None if limits.max_rows is None else limits.max_rows - rows, limits.max_columns,
            limits.max_bytes)
        try:
            with fs.open(file, "rb") as handle:
                fmt = detect_format(handle.read(64), shown)
                handle.seek(0)
                if fmt == "parquet" or shown.lower().endswith((".parquet", ".pq")):
                    import pyarrow as pa

                    part = _read_parquet(pa.PythonFile(handle, mode="r"), shown, limits=left)
                else:
                    part = read_csv(handle, shown, limits=left,
                                    **csv_options)  # type: ignore[arg-type]
        except InputError:
            raise
        except Exception as exc:
            raise _failed(f"cannot read {shown} of", url, exc) from None
        if frames and list(part.columns) != list(frames[0].columns):
            raise InputError(f"{shown} in {mask(url)} has other columns than "
                             f"{files[0].rsplit('/', 1)[-1]}; every file of a folder must "
                             "have the same header", code="malformed-csv")
        rows += len(part)
        limits.check(name, rows, part.shape[1])
        frames.append(part)
    if len(frames) == 1:
        frame = frames[0]
    else:
        frame = pd.DataFrame({
            c: (_combine([f[c] for f in frames]) if all(
                isinstance(f[c].dtype, pd.CategoricalDtype) for f in frames)
                else pd.concat([f[c].astype(object) if isinstance(f[c].dtype,
                                                                  pd.CategoricalDtype)
                                else f[c] for f in frames], ignore_index=True))
            for c in frames[0].columns}, copy=False)
    return check_table(frame, name, min_rows=min_rows)


# ----------------------------------------------------------------------------- destinations


def write_path(chunks: Iterable[pd.DataFrame], url: str) -> int:
    """Write chunks of a table to an fsspec URL: ``.parquet`` / ``.pq`` as Parquet, anything
    else as a CSV with formula cells escaped; a URL ending in ``/`` as a folder of Parquet
    parts, one a chunk. Returns the rows written."""
    fs, path = _filesystem(url)
    try:
        if url.endswith("/"):
            rows = 0
            for i, chunk in enumerate(chunks):
                with fs.open(f"{path.rstrip('/')}/part-{i:05d}.parquet", "wb") as handle:
                    _plain(chunk).to_parquet(handle, index=False)
                rows += len(chunk)
            return rows
        if path.lower().endswith((".parquet", ".pq")):
            return _write_parquet(chunks, fs, path)
        with fs.open(path, "w", encoding="utf-8", newline="") as handle:
            return write_csv(chunks, handle)
    except InputError:
        raise
    except Exception as exc:
        raise _failed("cannot write to", url, exc) from None


def _plain(chunk: pd.DataFrame) -> pd.DataFrame:
    """Categorical columns as text: one Parquet type for every chunk."""
    return chunk.apply(lambda c: c.astype(object) if isinstance(c.dtype, pd.CategoricalDtype)
                       else c)


def _write_parquet(chunks: Iterable[pd.DataFrame], fs: Any, path: str) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = 0
    writer = None
    with fs.open(path, "wb") as handle:
        try:
            for chunk in chunks:
                batch = pa.Table.from_pandas(_plain(chunk), preserve_index=False)
                if writer is None:
                    writer = pq.ParquetWriter(handle, batch.schema)
                writer.write_table(batch.cast(writer.schema))
                rows += len(chunk)
        finally:
            if writer is not None:
                writer.close()
    return rows


def write_sql(chunks: Iterable[pd.DataFrame], url: str, table: str, *,
              if_exists: str = "fail", types: dict[str, Any] | None = None,
              source_dialect: str | None = None) -> int:
    """Write chunks of a table to a database table, in one transaction (a failed write leaves
    the database as it was; on MySQL/MariaDB ``CREATE`` and ``DROP TABLE`` commit at once, so
    there a failed replace leaves the new table empty). ``types``: the source's SQLAlchemy
    column types (kept on the same database kind, their generic form on another); other
    columns typed from their dtype.
    ``if_exists``: fail, replace (drop and create) or append (to a table with these columns)."""
    from sqlalchemy import Column, MetaData, Table, inspect
    from sqlalchemy.exc import SQLAlchemyError

    if if_exists not in WRITE_MODES:
        raise InputError(f"--if-exists must be one of {', '.join(WRITE_MODES)}",
                         code="invalid-argument")
    schema, bare = _split_name(table)
    engine = _engine(url)
    iterator = iter(chunks)
    rows = 0
    try:
        with engine.begin() as conn:
            exists = inspect(conn).has_table(bare, schema=schema)
            if exists and if_exists == "fail":
                raise InputError(f"the table {table!r} already exists in {mask(url)}; give "
                                 "--if-exists replace or append", code="table-exists")
            first = next(iterator, None)
            if first is None:
                return 0
            metadata = MetaData()
            if exists and if_exists == "append":
                target = Table(bare, metadata, schema=schema, autoload_with=conn)
                missing = [c for c in first.columns if c not in target.columns]
                if missing:
                    raise InputError(f"the table {table!r} in {mask(url)} has no column(s) "
                                     f"{missing}; append needs the same columns",
                                     code="table-exists")
            else:
                if exists:
                    Table(bare, MetaData(), schema=schema, autoload_with=conn).drop(conn)
                same = source_dialect == engine.dialect.name
                target = Table(bare, metadata, *[
                    Column(str(c), _destination_type((types or {}).get(str(c)), first[c],
                                                     same))
                    for c in first.columns], schema=schema)
                metadata.create_all(conn)  # and the enum types it needs
            raw = _copy_driver(conn) if _copyable(target) else None
            dates = _date_columns(target)
            for chunk in _chain(first, iterator):
                if raw is not None:
                    _copy_in(raw, conn, target, chunk)
                else:
                    records = _records(chunk, dates)
                    if records:
                        conn.execute(target.insert(), records)
                rows += len(chunk)
    except InputError:
        raise
    except SQLAlchemyError as exc:
        raise _failed(f"cannot write {table!r} to", url, exc) from None
    finally:
        engine.dispose()
    return rows


def _copy_driver(conn: Any) -> Any:
    """The psycopg (3) connection under a PostgreSQL connection, for ``COPY``; None for
    another database or driver (psycopg2 has no ``cursor.copy``)."""
    if conn.dialect.name != "postgresql":
        return None
    raw = conn.connection.driver_connection
    return raw if type(raw).__module__.split(".")[0] == "psycopg" else None


def _copyable(target: Any) -> bool:
    """Whether every column's type reads the text :func:`_copy_in` writes."""
    from sqlalchemy import types as t

    return all(isinstance(c.type, t.Boolean | t.Integer | t.Numeric | t.Date | t.DateTime
                          | t.String | t.Enum) for c in target.columns)


def _copy_in(raw: Any, conn: Any, target: Any, chunk: pd.DataFrame) -> None:
    """PostgreSQL: a chunk through ``COPY ... FROM STDIN`` as CSV (the server parses the text;
    4.3x faster than batched ``INSERT``s for 1 M rows), in the write's transaction. Each
    column is written as its SQL type reads it: booleans ``t``/``f``, integers without a
    fraction (a float rounded, as an ``INSERT`` casts it), a ``DATE`` as its day, NULL as
    ``\\N`` (the same rows as the ``INSERT`` path: bench/README.md, "Connectors")."""
    from sqlalchemy import types as t

    if chunk.empty:
        return
    quote = conn.dialect.identifier_preparer
    columns = {}
    for name in chunk.columns:
        col, sql_type = chunk[name], target.c[str(name)].type
        if isinstance(sql_type, t.Boolean):
            col = col.astype(object).map({True: "t", False: "f"})
        elif isinstance(sql_type, t.Integer) and not pd.api.types.is_bool_dtype(col.dtype):
            col = pd.to_numeric(col, errors="coerce").round().astype("Int64")
        elif pd.api.types.is_datetime64_any_dtype(col.dtype):
            day = isinstance(sql_type, t.Date) and not isinstance(sql_type, t.DateTime)
            col = col.dt.strftime("%Y-%m-%d" if day else "%Y-%m-%d %H:%M:%S.%f")
        columns[str(name)] = col
    text = pd.DataFrame(columns, copy=False).to_csv(index=False, header=False, na_rep=_NULL)
    names = ", ".join(quote.quote(str(c)) for c in chunk.columns)
    with raw.cursor() as cursor, cursor.copy(
            f"COPY {quote.format_table(target)} ({names}) FROM STDIN "
            f"WITH (FORMAT csv, NULL '{_NULL}')") as copy:
        copy.write(text)


def _chain(first: pd.DataFrame, rest: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    yield first
    yield from rest


def _destination_type(source_type: Any, column: pd.Series, same_dialect: bool) -> Any:
    from sqlalchemy import types as t

    if source_type is not None:
        if same_dialect:
            return source_type
        if isinstance(source_type, t.Enum):  # its name: a native enum type where there is one
            return t.Enum(*source_type.enums, name=source_type.name or f"{column.name}_enum")
        if is_boolean(source_type):
            return t.Boolean()
        try:
            return source_type.as_generic()
        except NotImplementedError:
            pass
    dtype = column.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return t.Boolean()
    if pd.api.types.is_integer_dtype(dtype):
        return t.BigInteger()
    if pd.api.types.is_float_dtype(dtype):
        return t.Double()
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return t.DateTime()
    return t.Text()


def _date_columns(target: Any) -> set[str]:
    from sqlalchemy import types as t

    return {c.name for c in target.columns
            if isinstance(c.type, t.Date) and not isinstance(c.type, t.DateTime)}


def _records(chunk: pd.DataFrame, dates: set[str]) -> list[dict[str, Any]]:
    """A chunk as plain Python values for the driver: missing values as None, dates as dates."""
    columns: dict[str, list[Any]] = {}
    for name in chunk.columns:
        col = chunk[name]
        if pd.api.types.is_datetime64_any_dtype(col.dtype):
            values = [None if pd.isna(v) else (v.date() if name in dates else v.to_pydatetime())
                      for v in col.astype(object)]
        else:
            raw = col.astype(object).to_numpy()
            values = [None if _missing(v) else (v.item() if isinstance(v, np.generic) else v)
                      for v in raw]
        columns[str(name)] = values
    names = list(columns)
    return [dict(zip(names, row, strict=True)) for row in zip(*columns.values(), strict=True)]


def _missing(value: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def check_reachable(url: str) -> None:
    """Connect to a database (and run ``SELECT 1``) or list an fsspec location; raise a
    SourceError, its message free of secrets, when that fails."""
    if is_sql_url(url):
        from sqlalchemy import text
        from sqlalchemy.exc import SQLAlchemyError

        engine = _engine(url)
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except SQLAlchemyError as exc:
            raise _failed("cannot connect to", url, exc) from None
        finally:
            engine.dispose()
        return
    fs, path = _filesystem(url)
    try:
        fs.ls(path.rstrip("/") or path)
    except Exception as exc:
        raise _failed("cannot list", url, exc) from None


def check_destination(url: str, table: str, if_exists: str = "fail") -> None:
    """Before any work: the database answers, and ``if_exists=fail`` finds no such table."""
    from sqlalchemy import inspect
    from sqlalchemy.exc import SQLAlchemyError

    if if_exists not in WRITE_MODES:
        raise InputError(f"--if-exists must be one of {', '.join(WRITE_MODES)}",
                         code="invalid-argument")
    if not is_sql_url(url):
        raise InputError(f"{mask(url)} is not a database URL SQLAlchemy can open (a driver "
                         "may be missing)", code="invalid-argument")
    schema, bare = _split_name(table)
    engine = _engine(url)
    try:
        with engine.connect() as conn:
            exists = inspect(conn).has_table(bare, schema=schema)
    except SQLAlchemyError as exc:
        raise _failed("cannot connect to", url, exc) from None
    finally:
        engine.dispose()
    if exists and if_exists == "fail":
        raise InputError(f"the table {table!r} already exists in {mask(url)}; give "
                         "--if-exists replace or append", code="table-exists")


def mask_words(words: Iterable[str]) -> list[str]:
    """Command-line words with every URL masked (for a report's ``command``)."""
    return [mask(w) if is_url(w) else w for w in words]


# ----------------------------------------------------------------------------- types as JSON


def types_to_json(types: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Column types as JSON (for the service to keep with a snapshot): the kinds
    :func:`types_from_json` can rebuild; other columns are left out (typed from their dtype)."""
    from sqlalchemy import types as t

    out: dict[str, dict[str, Any]] = {}
    for name, ty in types.items():
        if isinstance(ty, t.Enum):
            out[name] = {"type": "enum", "labels": list(ty.enums), "name": ty.name}
        elif is_boolean(ty):
            out[name] = {"type": "boolean"}
        elif isinstance(ty, t.DateTime):
            out[name] = {"type": "timestamp", "timezone": bool(ty.timezone)}
        elif isinstance(ty, t.Date):
            out[name] = {"type": "date"}
        elif isinstance(ty, t.BigInteger):
            out[name] = {"type": "bigint"}
        elif isinstance(ty, t.SmallInteger):
            out[name] = {"type": "smallint"}
        elif isinstance(ty, t.Integer):
            out[name] = {"type": "integer"}
        elif isinstance(ty, t.Float):
            out[name] = {"type": "double"}
        elif isinstance(ty, t.Numeric):
            out[name] = {"type": "numeric", "precision": ty.precision, "scale": ty.scale}
        elif isinstance(ty, t.String):
            out[name] = {"type": "text"}
    return out


def types_from_json(doc: dict[str, dict[str, Any]] | None) -> dict[str, Any]:
    """SQLAlchemy types from :func:`types_to_json` (an enum as a named enum: a native type on
    PostgreSQL)."""
    from sqlalchemy import types as t

    out: dict[str, Any] = {}
    for name, spec in (doc or {}).items():
        kind = spec.get("type")
        if kind == "enum":
            out[name] = t.Enum(*spec["labels"], name=spec.get("name") or f"{name}_enum")
        elif kind == "numeric":
            out[name] = t.Numeric(spec.get("precision"), spec.get("scale"))
        elif kind == "timestamp":
            out[name] = t.DateTime(timezone=bool(spec.get("timezone")))
        else:
            simple = {"boolean": t.Boolean, "date": t.Date, "bigint": t.BigInteger,
                      "smallint": t.SmallInteger, "integer": t.Integer, "double": t.Double,
                      "text": t.Text}.get(str(kind))
            if simple is not None:
                out[name] = simple()
    return out


def without_credentials(url: str) -> str:
    """``url`` without user, password and query: what a source is, whoever reads it."""
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme.split("+", 1)[0], host.lower(), parts.path, "", ""))


__all__ = [
    "SourceError",
    "SourceTable",
    "check_destination",
    "check_query",
    "check_reachable",
    "conform",
    "display_name",
    "is_sql_url",
    "is_url",
    "mask",
    "mask_words",
    "merge_schemas",
    "public_schema",
    "read_source",
    "scrub",
    "write_path",
    "write_sql",
]
