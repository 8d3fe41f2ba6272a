"""Schema files: synthgen's format and SDV's metadata format; public facts cost no budget."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from synthgen import Synthesizer
from synthgen.errors import SchemaError
from synthgen.schema import ColumnKind, infer_schema, load_schema, parse_schema


def test_sdv_single_table_metadata_is_read_as_a_format() -> None:
    schema = parse_schema({
        "METADATA_SPEC_VERSION": "SINGLE_TABLE_V1",
        "columns": {
            "id": {"sdtype": "id"},
            "age": {"sdtype": "numerical", "computer_representation": "Int64"},
            "score": {"sdtype": "numerical", "computer_representation": "Float"},
            "city": {"sdtype": "categorical"},
            "ok": {"sdtype": "boolean"},
            "day": {"sdtype": "datetime", "datetime_format": "%Y-%m-%d"},
            "mail": {"sdtype": "email", "pii": True},
        },
    })
    kinds = {c.name: c.kind for c in schema.columns}
    assert kinds == {
        "id": ColumnKind.DROP, "age": ColumnKind.INTEGER, "score": ColumnKind.CONTINUOUS,
        "city": ColumnKind.CATEGORICAL, "ok": ColumnKind.BOOLEAN, "day": ColumnKind.DATETIME,
        "mail": ColumnKind.DROP,
    }


def test_sdv_multi_table_metadata_with_one_table() -> None:
    doc = {"tables": {"people": {"columns": {"x": {"sdtype": "numerical"}}}}}
    assert parse_schema(doc).columns[0].kind is ColumnKind.CONTINUOUS


@pytest.mark.parametrize(
    "doc",
    [
        {"columns": [{"name": "a", "kind": "categorical", "categories": []}]},
        {"columns": [{"name": "a", "kind": "integer", "lower": 5, "upper": 1}]},
        {"columns": [{"name": "a", "kind": "integer", "lower": 5}]},
        {"columns": [{"name": "a", "kind": "nonsense"}]},
        {"tables": {}},
        {"something": "else"},
    ],
)
def test_invalid_schemas_get_a_clear_error(doc: dict) -> None:
    with pytest.raises(SchemaError):
        parse_schema(doc)


def test_schema_naming_missing_columns_is_refused(people: pd.DataFrame) -> None:
    schema = parse_schema({"columns": [{"name": "nope", "kind": "integer"}]})
    with pytest.raises(SchemaError, match="nope"):
        infer_schema(people, schema)


def test_unreadable_schema_file(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_text("{not json")
    with pytest.raises(SchemaError):
        load_schema(path)


def test_public_schema_facts_are_used_and_cost_no_threshold(
    people: pd.DataFrame, tmp_path: Path
) -> None:
    path = tmp_path / "schema.json"
    path.write_text(json.dumps({"columns": [
        {"name": "city", "kind": "categorical", "nullable": True,
         "categories": ["Lyon", "Paris", "Nice", "Lille", "Rennes"]},
        {"name": "age", "kind": "integer", "lower": 18, "upper": 90},
        {"name": "joined", "kind": "datetime", "lower": "2015-01-01", "upper": "2023-12-31"},
    ]}))
    synth = Synthesizer(epsilon=1.0, epochs=2, seed=0, schema=load_schema(path)).fit(people)
    columns = {c["name"]: c for c in synth.report()["columns"]}
    assert columns["city"]["source"] == columns["age"]["source"] == "public"
    assert columns["joined"]["source"] == "public"
    city = next(d for d in synth.domains if d.name == "city")
    assert city.categories == ["Lyon", "Paris", "Nice", "Lille", "Rennes"]
    out = synth.sample(300)
    assert out["age"].between(18, 90).all()
    assert out["joined"].dropna().between(pd.Timestamp("2015-01-01"),
                                          pd.Timestamp("2023-12-31")).all()
