"""Column kinds and public domains.

A :class:`TableSchema` says, for every column, what kind of values it holds and which facts
about its domain are *public* (declared by the user, so they cost no privacy budget). Facts that
are not declared are estimated later by DP mechanisms (see :mod:`synthgen.privacy.mechanisms`).

A column the schema does not declare gets the kind ``auto``: its kind (boolean, integer,
continuous, datetime, categorical, a number with codes), its nullability and its output dtype are
then decided from its DP histogram (:mod:`synthgen.privacy.domains`), never from the dtype a reader
guessed from the raw cells. Only names are read to infer anything here (identifier-like names are
dropped). :func:`infer_kind` is the non-private, dtype-based guess the owner-only evaluation uses.
"""

from __future__ import annotations

import json
import math
import re
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from synthgen.errors import SchemaError
from synthgen.formats import FAMILY_OF_KIND, from_pattern


class ColumnKind(StrEnum):
    CATEGORICAL = "categorical"
    CONTINUOUS = "continuous"
    INTEGER = "integer"
    BOOLEAN = "boolean"
    DATETIME = "datetime"
    DROP = "drop"  # identifiers and free text: never learned, left out of the output
    AUTO = "auto"  # undeclared: the kind is decided from the column's DP histogram


NUMERIC_KINDS = frozenset({ColumnKind.CONTINUOUS, ColumnKind.INTEGER, ColumnKind.DATETIME})
DISCRETE_KINDS = frozenset({ColumnKind.CATEGORICAL, ColumnKind.BOOLEAN})

# The output dtypes a declared kind may ask for (``dtype``): what its decoder writes correctly.
# Anything else (a typo, "object; import os") is refused when the schema is read, not after
# training has spent the budget.
_INT_DTYPES = frozenset({"int64", "Int64", "int32", "Int32", "float64", "Float64"})
_FLOAT_DTYPES = frozenset({"float64", "Float64", "float32", "Float32"})
DTYPES: dict[ColumnKind, frozenset[str]] = {
    ColumnKind.INTEGER: _INT_DTYPES,
    ColumnKind.CONTINUOUS: _FLOAT_DTYPES,
    ColumnKind.BOOLEAN: frozenset({"bool", "boolean"}),
    ColumnKind.DATETIME: frozenset({"datetime64[ns]", "datetime64[us]", "datetime64[ms]",
                                    "datetime64[s]"}),
    ColumnKind.CATEGORICAL: frozenset({"object", "str", "string", "category", "int64",
                                       "Int64", "float64", "Float64", "boolean"}),
}
# Bounds: numbers the grid can cut into 32 finite bins (int64's range; the auto grid stops
# there too); datetime bounds are epoch seconds within pandas' nanosecond range (1677-2262).
MAX_BOUND = 2.0**63
MAX_DATETIME_BOUND = pd.Timestamp.max.value / 1e9
# strftime/strptime directives a datetime_format may use.
_FORMAT_DIRECTIVES = frozenset("aAwdbBmyYHIpMSfzZjUWcxXGuV%")
SCHEMA_MAX_DEPTH = 32  # nesting of a schema document (synthgen's and SDV's need under 8)

# Names that say "identifier": such columns are dropped unless a schema says otherwise.
_ID_NAME = re.compile(r"(^|[_\-\s])(id|uuid|guid|key)$|^(id|uuid|guid)([_\-\s]|$)", re.IGNORECASE)


class ColumnSpec(BaseModel):
    """One column: its kind and any public facts about its domain."""

    model_config = ConfigDict(extra="forbid")

    name: str
    kind: ColumnKind
    categories: list[str] | None = Field(
        default=None, description="Public category list (categorical): costs no budget. Numbers "
        "are matched by the cell's text (1 and \"1\" both match a cell 1, or 1.0)."
    )
    other: bool = Field(
        default=False, description="Categorical with a list: values outside it go to an 'Other' "
        "bucket. Without it, such a value is an error."
    )
    nullable: bool | None = Field(
        default=False, description="May the column hold empty cells? A declared column holds "
        "none unless it says so (an empty cell is then an error); null lets a DP count decide."
    )
    codes: list[str] | None = Field(
        default=None, description="Integer/continuous: the public list of non-numeric codes "
        "the column may hold (a number with codes, such as N or -)."
    )
    lower: float | None = Field(default=None, description="Public lower bound (numeric kinds).")
    upper: float | None = Field(default=None, description="Public upper bound (numeric kinds).")
    dtype: str | None = Field(default=None, description="pandas dtype of the output column.")
    format: str | None = Field(
        default=None, description="How the cells are written, read and written back: a number "
        "pattern (0.00, #,##0, $#,##0.00, #.##0,00 €, 0.0%), a strftime date pattern (%m/%d/%Y, "
        "%d.%m.%Y %H:%M), a boolean pair (yes/no, Y/N) or code (digit strings whose leading "
        "zeros matter). Undeclared: released by a DP vote (undeclared kinds) or plain."
    )
    datetime_format: str | None = Field(default=None, description="SDV's name for a datetime "
                                        "column's format: read as format.")

    @field_validator("name")
    @classmethod
    def _usable_name(cls, value: str) -> str:
        if not value or "\x00" in value:
            raise ValueError("a column name must be non-empty text without NUL characters")
        return value

    @field_validator("other", "nullable", mode="before")
    @classmethod
    def _json_boolean(cls, value: Any) -> Any:
        if value is not None and not isinstance(value, bool):
            raise ValueError(f"must be true or false (JSON), not {value!r}")
        return value

    @field_validator("lower", "upper", mode="before")
    @classmethod
    def _dates_as_seconds(cls, value: Any) -> Any:
        """Datetime bounds may be written as ISO dates; they are kept as epoch seconds."""
        if isinstance(value, bool):
            raise ValueError("a bound must be a number or an ISO date, not true/false")
        if isinstance(value, str):
            try:
                stamp = pd.Timestamp(value)
            except ValueError as exc:
                raise ValueError(f"bound {value!r} is neither a number nor an ISO date") from exc
            if stamp.tzinfo is not None:
                stamp = stamp.tz_convert(None)
            return float(stamp.value) / 1e9
        return value

    @field_validator("categories", "codes", mode="before")
    @classmethod
    def _labels_as_text(cls, value: Any) -> Any:
        """Codes are often written as JSON numbers: they stand for the cell's text."""
        if isinstance(value, list):
            return [v if isinstance(v, str) else cell_text(v) for v in value]
        return value

    @field_validator("lower", "upper")
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        if value is not None and not (math.isfinite(value) and abs(value) <= MAX_BOUND):
            raise ValueError(f"a bound must be a finite number within +-2**63, not {value!r}")
        return value

    @field_validator("categories", "codes")
    @classmethod
    def _no_nul(cls, value: list[str] | None) -> list[str] | None:
        for label in value or ():
            if "\x00" in label:
                raise ValueError(f"label {label[:100]!r} holds a NUL character")
        return value

    @field_validator("datetime_format")
    @classmethod
    def _known_directives(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if not value or len(value) > 100 or "\x00" in value:
            raise ValueError("a datetime format must be 1 to 100 characters, without NUL")
        for directive in re.findall(r"%(.?)", value.replace("%%", "")):
            if directive not in _FORMAT_DIRECTIVES:
                raise ValueError(f"{value!r} uses the unknown directive %{directive} (known: "
                                 "strftime's %Y %m %d %H %M %S %f %z ...)")
        return value

    @model_validator(mode="after")
    def _check_domain(self) -> ColumnSpec:
        # "field: why": parse_schema turns the field into the error's path (columns[3].upper)
        self._check_output()
        if self.datetime_format is not None and self.format is None:
            self.format = self.datetime_format
        if self.format is not None:
            try:
                family = from_pattern(self.format).family
            except ValueError as exc:
                raise ValueError(f"format: {exc}") from None
            allowed = {**FAMILY_OF_KIND, "categorical": ("code",)}.get(self.kind.value, ())
            if family not in allowed:
                raise ValueError(f"format: a {family} format does not apply to a "
                                 f"{self.kind.value} column")
        if self.other and self.categories is None:
            raise ValueError("other: 'other' needs a category list")
        if self.codes is not None and self.kind not in (ColumnKind.INTEGER,
                                                         ColumnKind.CONTINUOUS):
            raise ValueError("codes: codes only apply to integer or continuous")
        if self.categories is not None:
            if self.kind is not ColumnKind.CATEGORICAL:
                raise ValueError("categories: categories only apply to categorical")
            if not self.categories:
                raise ValueError("categories: the category list is empty")
        if (self.lower is None) != (self.upper is None):
            raise ValueError(f"{'upper' if self.upper is None else 'lower'}: give both lower "
                             "and upper, or neither")
        if self.lower is not None and self.upper is not None:
            if self.kind not in NUMERIC_KINDS:
                raise ValueError("lower: bounds only apply to numeric kinds")
            if not self.lower < self.upper:
                raise ValueError(f"upper: lower ({self.lower:g}) must be below upper "
                                 f"({self.upper:g})")
            if self.kind is ColumnKind.DATETIME and max(-self.lower, self.upper) > (
                    MAX_DATETIME_BOUND):
                raise ValueError("lower: datetime bounds must lie between 1677-09-22 and "
                                 "2262-04-11")
            if self.kind is ColumnKind.INTEGER and math.ceil(self.lower) > math.floor(
                    self.upper):
                raise ValueError("upper: no integer lies between lower and upper")
        return self

    def _check_output(self) -> None:
        """``dtype`` fits the kind (see :data:`DTYPES`)."""
        if self.dtype is None:
            return
        allowed = DTYPES.get(self.kind)
        if allowed is None:
            raise ValueError("dtype: a dtype only applies to a declared kind (categorical, "
                             "continuous, integer, boolean, datetime)")
        if self.dtype not in allowed:
            raise ValueError(f"dtype: {self.dtype[:100]!r} is not a dtype this column can be "
                             f"written as; a {self.kind.value} column takes one of "
                             f"{', '.join(sorted(allowed))}")
        if self.nullable is not False and self.dtype in ("int64", "int32", "bool"):
            raise ValueError(f"dtype: {self.dtype!r} cannot hold the nulls a nullable column "
                             f"may have; use {'boolean' if self.dtype == 'bool' else 'Int64'}")

    @property
    def has_public_domain(self) -> bool:
        if self.kind is ColumnKind.CATEGORICAL:
            return self.categories is not None
        if self.kind is ColumnKind.BOOLEAN:
            return True
        if self.kind in NUMERIC_KINDS:
            return self.lower is not None
        return self.kind is not ColumnKind.AUTO


class TableSchema(BaseModel):
    """The columns of a table, in order."""

    model_config = ConfigDict(extra="forbid")

    columns: list[ColumnSpec]

    def __getitem__(self, name: str) -> ColumnSpec:
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(name)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def learned(self) -> list[ColumnSpec]:
        return [c for c in self.columns if c.kind is not ColumnKind.DROP]


# ----------------------------------------------------------------------------- inference


def _looks_like_identifier(name: str) -> bool:
    return bool(_ID_NAME.search(name.strip()))


_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}")


def _all_parse_as_datetime(values: pd.Series) -> bool:
    # Cheap refusal first, before any pass over the whole column: most text columns fail on
    # their first values (a failing value anywhere means "no", so this only saves time).
    head = values.iloc[:256].dropna().iloc[:64]
    if not all(isinstance(v, str) and _ISO_DATE.match(v) for v in head):
        return False
    # Then every distinct value once (a categorical's used categories; no per-row parsing).
    if isinstance(values.dtype, pd.CategoricalDtype):
        distinct = values.cat.remove_unused_categories().cat.categories
    else:
        distinct = pd.Index(pd.factorize(values)[1])  # one hash pass; nulls left out
    if distinct.empty or pd.api.types.infer_dtype(distinct, skipna=False) != "string":
        return False
    if not all(_ISO_DATE.match(v) for v in distinct[:64]):
        return False
    parsed = pd.to_datetime(distinct, errors="coerce", format="ISO8601")
    return bool(parsed.notna().all())


def cell_text(value: Any) -> str:
    """A cell's text as a CSV holds it, whatever type the reader gave it: whole numbers without
    a decimal part (pandas writes an integer column with missing values as 1.0, 2.0)."""
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        number = float(value)
        if number.is_integer() and abs(number) < 2**63:
            return str(int(number))
        return repr(number)
    return str(value)


def infer_kind(name: str, values: pd.Series) -> ColumnKind:
    """The kind a column's dtype and format suggest. NOT PRIVATE (it reads every cell): only the
    owner-only evaluation uses it; fitting decides kinds from DP histograms instead."""
    if _looks_like_identifier(name):
        return ColumnKind.DROP
    dtype = values.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return ColumnKind.BOOLEAN
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return ColumnKind.DATETIME
    if pd.api.types.is_integer_dtype(dtype):
        return ColumnKind.INTEGER
    if pd.api.types.is_float_dtype(dtype):
        finite = values.to_numpy(dtype="float64", na_value=np.nan)
        finite = finite[np.isfinite(finite)]
        if finite.size and np.all(finite == np.round(finite)):
            return ColumnKind.INTEGER
        return ColumnKind.CONTINUOUS
    if _all_parse_as_datetime(values):
        return ColumnKind.DATETIME
    return ColumnKind.CATEGORICAL


def output_dtype(kind: ColumnKind, nullable: bool, codes: bool = False) -> str:
    """The dtype of a synthetic column: from its released kind and nullability only (never
    from the dtype a reader chose). A number with codes is text (numbers and codes)."""
    if codes or kind is ColumnKind.CATEGORICAL:
        return "object"
    if kind is ColumnKind.INTEGER:
        return "Int64" if nullable else "int64"
    if kind is ColumnKind.BOOLEAN:
        return "boolean" if nullable else "bool"
    if kind is ColumnKind.DATETIME:
        return "datetime64[ns]"
    return "float64"


def infer_schema(df: pd.DataFrame, declared: TableSchema | None = None) -> TableSchema:
    """The public schema of ``df``: the declared columns, and for the others ``drop`` (an
    identifier-like name) or ``auto`` (kind and nullability decided by DP). Reads only the
    column names."""
    declared_by_name = {c.name: c for c in declared.columns} if declared else {}
    unknown = set(declared_by_name) - set(map(str, df.columns))
    if unknown:
        raise SchemaError(
            f"the schema names columns the table does not have: {sorted(unknown)}; "
            "fix the schema or the table's header"
        )
    columns: list[ColumnSpec] = []
    for raw_name in df.columns:
        name = str(raw_name)
        spec = declared_by_name.get(name)
        if spec is None:
            kind = ColumnKind.DROP if _looks_like_identifier(name) else ColumnKind.AUTO
            spec = ColumnSpec(name=name, kind=kind, nullable=None)
        columns.append(spec)
    return TableSchema(columns=columns)


# ----------------------------------------------------------------------------- schema files

_SDV_KINDS = {
    "categorical": ColumnKind.CATEGORICAL,
    "boolean": ColumnKind.BOOLEAN,
    "datetime": ColumnKind.DATETIME,
    "id": ColumnKind.DROP,
    "text": ColumnKind.DROP,
    "pii": ColumnKind.DROP,
    "unknown": ColumnKind.DROP,
}


def _from_sdv_columns(columns: dict[str, Any]) -> TableSchema:
    specs = []
    for name, meta in columns.items():
        if not isinstance(meta, dict):
            raise SchemaError(f"the schema is invalid: columns.{name}: SDV metadata gives each "
                              "column an object (its sdtype, ...)")
        sdtype = meta.get("sdtype", "unknown")
        representation = meta.get("computer_representation", "Float")
        if not isinstance(sdtype, str) or not isinstance(representation, str):
            raise SchemaError(f"the schema is invalid: columns.{name}: sdtype and "
                              "computer_representation must be text")
        if sdtype == "numerical":
            kind = ColumnKind.INTEGER if representation.startswith(("Int", "UInt")) else (
                ColumnKind.CONTINUOUS
            )
        else:
            # SDV's PII sdtypes (email, phone_number, ...) are identifiers for us: dropped.
            kind = _SDV_KINDS.get(sdtype, ColumnKind.DROP)
        # SDV's metadata says nothing about missing values: a DP count decides
        try:
            specs.append(ColumnSpec(name=name, kind=kind, nullable=None,
                                    datetime_format=meta.get("datetime_format")))
        except ValidationError as exc:
            raise SchemaError(f"the schema is invalid: columns.{name}: "
                              f"{_describe(exc, {})}") from exc
    return TableSchema(columns=specs)


def _distinct(schema: TableSchema, document: dict[str, Any]) -> TableSchema:
    """A schema file names each column once, and each category and code once per column (a
    run's own schemas are distinct by construction; these are checked where a user wrote
    them)."""
    names: set[str] = set()
    for i, col in enumerate(schema.columns):
        if col.name in names:
            raise SchemaError(f"the schema is invalid: columns[{i}].name: column "
                              f"{col.name[:100]!r} is declared twice")
        names.add(col.name)
        for field in ("categories", "codes"):
            labels = getattr(col, field) or []
            if len(set(labels)) < len(labels):
                twice = next(label for label in labels if labels.count(label) > 1)
                raise SchemaError(f"the schema is invalid: columns[{i}].{field}"
                                  f"{_column_name(document, ('columns', i))}: {twice[:100]!r} "
                                  "is listed twice (1 and \"1\" are the same label)")
    return schema


def _field_path(loc: tuple[int | str, ...]) -> str:
    """``("columns", 3, "upper")`` as ``columns[3].upper``."""
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def _depth(document: Any, limit: int = SCHEMA_MAX_DEPTH) -> int:
    """How deeply ``document`` nests (arrays and objects), counting no further than
    ``limit + 1``: iterative, so no document is deep enough to exhaust the stack."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(document, 1)]
    while stack:
        node, level = stack.pop()
        if not isinstance(node, dict | list):
            continue
        deepest = max(deepest, level)
        if deepest > limit:
            return deepest
        stack.extend((child, level + 1) for child in (
            node.values() if isinstance(node, dict) else node))
    return deepest


def parse_schema(document: dict[str, Any]) -> TableSchema:
    """A schema from its JSON document: synthgen's own format or SDV's metadata format.

    Every field is checked here (kinds, finite bounds below one another, known dtypes and
    datetime formats, distinct names and labels): a SchemaError names the first bad field
    (``columns[3].upper``), so a schema that would fail a job after its budget is spent is
    refused before anything is read."""
    if _depth(document) > SCHEMA_MAX_DEPTH:
        raise SchemaError(f"the schema nests deeper than {SCHEMA_MAX_DEPTH} levels; a schema "
                          "is a list of flat column objects")
    try:
        columns = document.get("columns")
        if isinstance(columns, list):
            return _distinct(TableSchema.model_validate(document), document)
        if isinstance(columns, dict):  # SDV single-table metadata (SINGLE_TABLE_V1)
            return _from_sdv_columns(columns)
        tables = document.get("tables")
        if isinstance(tables, dict) and len(tables) == 1:  # SDV multi-table metadata, one table
            only = next(iter(tables.values()))
            if isinstance(only, dict) and isinstance(only.get("columns", {}), dict):
                return _from_sdv_columns(only.get("columns", {}))
    except ValidationError as exc:
        raise SchemaError(f"the schema is invalid: {_describe(exc, document)}") from exc
    raise SchemaError(
        "the schema has no 'columns' list (synthgen format) or 'columns' mapping (SDV metadata); "
        "see README, 'Schema files'"
    )


def schema_document(schema: TableSchema) -> dict[str, Any]:
    """``schema`` as synthgen's schema JSON (what :func:`load_schema` reads back): each column's
    name, kind and nullability (``null``: a DP count decides), then only the facts it holds;
    datetime bounds as ISO dates."""
    columns = []
    for spec in schema.columns:
        entry: dict[str, Any] = {"name": spec.name, "kind": spec.kind.value}
        if spec.kind is ColumnKind.DROP:
            columns.append(entry)
            continue
        entry["nullable"] = spec.nullable
        for key, value in spec.model_dump(mode="json", exclude={"name", "kind", "nullable"},
                                          exclude_none=True).items():
            if key == "other" and not value:
                continue
            if key in ("lower", "upper") and spec.kind is ColumnKind.DATETIME:
                value = iso_seconds(float(value))
            entry[key] = value
        columns.append(entry)
    return {"columns": columns}


def iso_seconds(seconds: float) -> str:
    """Epoch seconds as an ISO date (a date alone at midnight) that the bound parser reads."""
    stamp = pd.Timestamp(round(seconds), unit="s")
    return stamp.date().isoformat() if stamp == stamp.normalize() else stamp.isoformat()


def write_schema(schema: TableSchema, path: str | Path) -> Path:
    """Write ``schema`` as a schema file that ``--schema`` / :func:`load_schema` reads."""
    path = Path(path)
    path.write_text(json.dumps(schema_document(schema), indent=2, ensure_ascii=False) + "\n",
                    encoding="utf-8")
    return path


def _describe(exc: ValidationError, document: dict[str, Any]) -> str:
    """The first error as ``columns[3].upper (column 'age'): why``."""
    error = exc.errors()[0]
    loc = tuple(error["loc"])
    msg = str(error["msg"]).removeprefix("Value error, ")
    field = re.match(r"^(\w+): ", msg)
    if field and len(loc) == 2 and loc[0] == "columns":  # a check across fields: its field
        loc, msg = (*loc, field[1]), msg[field.end():]
    return f"{_field_path(loc)}{_column_name(document, loc)}: {msg}"


def _column_name(document: dict[str, Any], loc: tuple[int | str, ...]) -> str:
    """`` (column 'age')`` for an error inside the document's ``columns[i]``."""
    if len(loc) >= 2 and loc[0] == "columns" and isinstance(loc[1], int):
        try:
            name = document["columns"][loc[1]].get("name")
        except (AttributeError, IndexError, KeyError, TypeError):
            return ""
        if isinstance(name, str):
            return f" (column {name[:100]!r})"
    return ""


def load_schema(path: str | Path) -> TableSchema:
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SchemaError(f"cannot read the schema file {str(path)!r}: {exc}") from exc
    except RecursionError as exc:
        raise SchemaError(f"the schema file {str(path)!r} nests deeper than "
                          f"{SCHEMA_MAX_DEPTH} levels") from exc
    if not isinstance(document, dict):
        raise SchemaError("the schema file must hold a JSON object")
    return parse_schema(document)
