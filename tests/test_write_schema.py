"""``--write-schema``: a run writes the schema it used (DP outputs and declarations), which
``--schema`` reads back; the loop run -> review -> reuse."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from synthgen.cli import app
from synthgen.privacy.domains import ColumnDomain
from synthgen.schema import (
    ColumnKind,
    ColumnSpec,
    TableSchema,
    load_schema,
    parse_schema,
    schema_document,
    write_schema,
)

runner = CliRunner()


def _table(n: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    flag = rng.choice(["True", "False"], n).astype(object)
    flag[rng.random(n) < 0.25] = None
    return pd.DataFrame({
        "customer_id": np.arange(n),
        "segment": rng.choice(["retail", "sme", "corporate", "public"], n, p=[.4, .3, .2, .1]),
        "age": rng.integers(18, 80, n),
        "is_active": flag,
        "signup": (pd.Timestamp("2019-01-01") + pd.to_timedelta(rng.integers(0, 1500, n),
                                                                 unit="D")).strftime("%Y-%m-%d"),
    })


def _run(src: Path, tmp_path: Path, *extra: str) -> tuple[Path, dict[str, Any]]:
    out, rep = tmp_path / f"o{len(extra)}.csv", tmp_path / f"r{len(extra)}.json"
    result = runner.invoke(app, ["run", str(src), "--out", str(out), "--report", str(rep),
                                 "--epochs", "1", "--seed", "0", "--no-audit",
                                 "--holdout-share", "0", *extra])
    assert result.exit_code == 0, result.output
    return out, json.loads(rep.read_text())


def test_write_reload_and_run_again_with_it(tmp_path: Path) -> None:
    src = tmp_path / "crm.csv"
    _table().to_csv(src, index=False)
    written = tmp_path / "schema.json"
    _, first = _run(src, tmp_path, "--write-schema", str(written))
    document = json.loads(written.read_text())
    assert document == first["schema"]  # the report carries the same document
    schema = load_schema(written)
    kinds = {c.name: c.kind for c in schema.columns}
    assert kinds == {"customer_id": ColumnKind.DROP, "segment": ColumnKind.CATEGORICAL,
                     "age": ColumnKind.INTEGER, "is_active": ColumnKind.BOOLEAN,
                     "signup": ColumnKind.DATETIME}
    segment = schema["segment"]
    assert set(segment.categories or []) <= {"retail", "sme", "corporate", "public"}
    assert "retail" in (segment.categories or [])
    assert schema["is_active"].nullable is True  # a quarter of empty cells, released
    age = schema["age"]
    # the released range (the edges of the grid cells that cleared the noise; on 400 rows at
    # epsilon 1 the thin octave 16-31 may not)
    assert age.lower is not None and age.upper is not None and age.lower < 79 <= age.upper
    signup = next(c for c in document["columns"] if c["name"] == "signup")
    assert isinstance(signup["lower"], str) and signup["lower"] <= "2019-01-01"
    # reused: the same kinds, released categories and ranges, now declared
    out, second = _run(src, tmp_path, "--schema", str(written), "--write-schema",
                       str(tmp_path / "again.json"))
    assert {c["name"]: c["kind"] for c in second["columns"]} == {
        k: v.value for k, v in kinds.items()}
    again = load_schema(tmp_path / "again.json")
    assert again["segment"].categories == segment.categories
    assert (again["age"].lower, again["age"].upper) == (age.lower, age.upper)
    synthetic = pd.read_csv(out)
    assert set(synthetic["segment"].dropna()) <= {*(segment.categories or []), "Other"}


def test_the_document_round_trips_every_field() -> None:
    schema = TableSchema(columns=[
        ColumnSpec(name="id", kind=ColumnKind.DROP),
        ColumnSpec(name="c", kind=ColumnKind.CATEGORICAL, categories=["a", "1"], other=True,
                   nullable=None),
        ColumnSpec(name="n", kind=ColumnKind.INTEGER, codes=["N", "-"], lower=0, upper=99,
                   nullable=True),
        ColumnSpec(name="x", kind=ColumnKind.CONTINUOUS, nullable=False),
        ColumnSpec.model_validate({"name": "d", "kind": "datetime", "lower": "2015-01-01",
                                   "upper": "2024-12-31T12:30:00", "nullable": None}),
        ColumnSpec(name="b", kind=ColumnKind.BOOLEAN, nullable=True),
    ])
    document = schema_document(schema)
    assert parse_schema(json.loads(json.dumps(document))) == schema
    by_name = {c["name"]: c for c in document["columns"]}
    assert by_name["id"] == {"name": "id", "kind": "drop"}
    assert by_name["c"]["nullable"] is None  # written, so that reading it back is not false
    assert "other" not in by_name["x"] and by_name["x"]["nullable"] is False
    assert (by_name["d"]["lower"], by_name["d"]["upper"]) == ("2015-01-01",
                                                              "2024-12-31T12:30:00")


def _domain(**fields: object) -> ColumnDomain:
    base: dict[str, object] = {"name": "a", "kind": ColumnKind.INTEGER, "dtype": "int64",
                               "source": "dp", "bins": [(0.0, 8.0), (8.0, 16.0)],
                               "nullable": False, "decided": {"kind": "dp", "nullable": "dp"}}
    return ColumnDomain(**{**base, **fields})  # type: ignore[arg-type]


@pytest.mark.parametrize(("fields", "declared", "expected"), [
    ({}, ColumnSpec(name="a", kind=ColumnKind.AUTO, nullable=None),
     {"kind": ColumnKind.INTEGER, "lower": 0.0, "upper": 16.0, "nullable": None}),
    ({"decided": {"kind": "declared", "nullable": "declared"}},
     ColumnSpec(name="a", kind=ColumnKind.INTEGER, lower=1, upper=9),
     {"lower": 1.0, "upper": 9.0, "nullable": False}),  # declared bounds and "false" kept
    ({"nullable": True}, ColumnSpec(name="a", kind=ColumnKind.AUTO, nullable=None),
     {"nullable": True}),
    ({"codes": ["N"]}, ColumnSpec(name="a", kind=ColumnKind.AUTO, nullable=None), {"codes": ["N"]}),
    ({"kind": ColumnKind.CATEGORICAL, "bins": [], "categories": [1, True, "x"],
      "has_other": True}, ColumnSpec(name="a", kind=ColumnKind.AUTO, nullable=None),
     {"categories": ["1", "True", "x"], "other": True, "lower": None}),
    ({"kind": ColumnKind.CATEGORICAL, "bins": [], "categories": [], "has_other": False},
     ColumnSpec(name="a", kind=ColumnKind.AUTO, nullable=None), {"categories": None}),
    ({"kind": ColumnKind.DROP, "source": "dropped"},
     ColumnSpec(name="a", kind=ColumnKind.AUTO, nullable=None), {"kind": ColumnKind.DROP}),
])
def test_a_domain_becomes_a_schema_entry(fields: dict[str, object], declared: ColumnSpec,
                                        expected: dict[str, object]) -> None:
    spec = _domain(**fields).to_spec(declared)
    for key, value in expected.items():
        assert getattr(spec, key) == value, key


def test_write_schema_writes_a_file_load_schema_reads(tmp_path: Path) -> None:
    schema = TableSchema(columns=[ColumnSpec(name="Zoë", kind=ColumnKind.CATEGORICAL,
                                             categories=["Köln"])])
    path = write_schema(schema, tmp_path / "s.json")
    assert load_schema(path) == schema and "Köln" in path.read_text(encoding="utf-8")


def test_the_released_formats_are_written_and_read_back(tmp_path: Path) -> None:
    """A column's format (the DP format vote's winner) goes into the written schema, and a
    run given the file reads and writes the column in it."""
    rng = np.random.default_rng(1)
    n = 800
    day = pd.Timestamp("2018-01-01") + pd.to_timedelta(rng.integers(0, 1500, n), "D")
    src = tmp_path / "t.csv"
    pd.DataFrame({"last_order": day.strftime("%m/%d/%Y"),
                  "balance": [f"${v:,.2f}" for v in rng.lognormal(6.5, 1.0, n)],
                  "segment": rng.choice(["a", "b", "c"], n)}).to_csv(src, index=False)
    written = tmp_path / "schema.json"
    _run(src, tmp_path, "--write-schema", str(written))
    formats = {c.name: c.format for c in load_schema(written).columns}
    assert formats["last_order"] == "%m/%d/%Y" and formats["balance"] is not None, formats
    out, _ = _run(src, tmp_path, "--schema", str(written))
    synthetic = pd.read_csv(out, dtype=str, keep_default_na=False, na_values=[""])
    assert synthetic["last_order"].dropna().str.fullmatch(r"\d{2}/\d{2}/\d{4}").mean() > 0.99
    assert synthetic["balance"].dropna().str.startswith("$").mean() > 0.99
