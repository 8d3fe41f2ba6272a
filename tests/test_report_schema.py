"""Real reports validate against docs/report.schema.json, and the schema rejects broken ones."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import jsonschema
import pandas as pd
import pytest
import torch
from conftest import make_people

from synthgen import ColumnSpec, Synthesizer, TableSchema
from synthgen.evaluate import evaluate_job, plan_evaluation
from synthgen.report import (
    REPORT_SCHEMA_VERSION,
    evaluation_path,
    jsonable,
    write_evaluation,
    write_report,
)

SCHEMA = json.loads((Path(__file__).resolve().parents[1] / "docs" /
                     "report.schema.json").read_text(encoding="utf-8"))
CITIES = ["Lyon", "Paris", "Nice", "Lille"]


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """Tiny models train faster on one thread (no pool to wake), above all on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def validator() -> jsonschema.Draft202012Validator:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    return jsonschema.Draft202012Validator(SCHEMA)


def evaluation_validator() -> jsonschema.Draft202012Validator:
    """The owner-only evaluation's schema: ``$defs/evaluation`` of the same file."""
    return jsonschema.Draft202012Validator({**SCHEMA["$defs"]["evaluation"],
                                            "$defs": SCHEMA["$defs"]})


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], dict[str, Any]]:
    """A real fit (default PRV accountant), sampled, evaluated with an audit and a target."""
    table = make_people(600, 0)
    plan = plan_evaluation(table, holdout_share=0.2, audit=True, target="member", seed=0)
    schema = TableSchema(columns=[ColumnSpec(name="city", kind="categorical",
                                             categories=CITIES, nullable=True)])
    with one_torch_thread():
        synth = Synthesizer(1.0, schema=schema, epochs=2, seed=0)
        synth.fit(plan.training_table(table))
        synthetic = synth.sample(len(table))
        report = synth.report()
    evaluation = evaluate_job(report, plan, plan.training_table(table), synthetic, seed=0)
    path = tmp_path_factory.mktemp("report") / "report.json"
    write_report(report, path)
    write_evaluation(evaluation, evaluation_path(path))
    return (json.loads(path.read_text(encoding="utf-8")),
            json.loads(evaluation_path(path).read_text(encoding="utf-8")))


@pytest.fixture(scope="module")
def fitted_report(fitted: tuple[dict[str, Any], dict[str, Any]]) -> dict[str, Any]:
    return fitted[0]


@pytest.fixture(scope="module")
def fitted_evaluation(fitted: tuple[dict[str, Any], dict[str, Any]]) -> dict[str, Any]:
    return fitted[1]


def test_the_schema_is_valid_draft_2020_12() -> None:
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    validator()
    assert SCHEMA["properties"]["report_schema_version"]["const"] == REPORT_SCHEMA_VERSION


def test_a_real_report_and_its_evaluation_validate(
    fitted_report: dict[str, Any], fitted_evaluation: dict[str, Any]
) -> None:
    errors = [f"{e.json_path}: {e.message}" for e in validator().iter_errors(fitted_report)]
    assert errors == []
    errors = [f"{e.json_path}: {e.message}"
              for e in evaluation_validator().iter_errors(fitted_evaluation)]
    assert errors == []
    # The public report holds no section computed on real rows; the evaluation holds them all,
    # each marked owner-only in its keys.
    assert not {"quality", "utility", "audit", "holdout", "evaluation"} & set(fitted_report)
    assert fitted_evaluation["owner_only"] is True
    assert all(fitted_evaluation[s]["owner_only"] is True for s in ("quality", "utility", "audit"))
    # about 120 of 600 rows held out, each on its own (Poisson)
    held = fitted_evaluation["holdout"]["rows"]
    assert 80 < held < 160 and abs(fitted_report["rows"] - (600 - held)) < 60
    assert fitted_evaluation["utility"]["metric"] == "roc_auc"
    assert "not evidence of differential privacy" in fitted_evaluation["heuristics"]


def test_the_report_declares_what_was_spent_and_how_it_composes(
    fitted_report: dict[str, Any]
) -> None:
    r = fitted_report
    assert r["dp"] is True and r["epsilon"] <= r["target_epsilon"]
    assert [e["mechanism"] for e in r["ledger"]] == [
        "gaussian_row_count", "gaussian_format_votes", "gaussian_histograms",
        "gaussian_one_way_marginals", "gaussian_pair_selection",
        "gaussian_two_way_marginals", "dp_sgd"]
    assert r["composition"]["history"] == [
        [e["noise_multiplier"], e["sampling_rate"], e["steps"]] for e in r["ledger"]]
    assert r["composition"]["epsilon"] == r["epsilon"]
    curve = r["epsilon_curve"]
    assert curve["accountant"] == "prv"
    assert curve["points"][-1]["epsilon"] == pytest.approx(r["epsilon"], rel=1e-9)
    assert curve["points"][-1]["step"] == r["training"]["steps"]


def test_the_schema_refuses_owner_only_sections_in_the_public_report(
    fitted_report: dict[str, Any], fitted_evaluation: dict[str, Any]
) -> None:
    for section in ("quality", "audit", "holdout"):
        leaked = {**fitted_report, section: fitted_evaluation[section]}
        assert list(validator().iter_errors(leaked)) != [], section
    with pytest.raises(ValueError, match="owner-only"):
        write_report({**fitted_report, "audit": fitted_evaluation["audit"]}, "unused.json")


@pytest.mark.parametrize("break_it", [
    lambda r, e: r.pop("epsilon"),
    lambda r, e: r.__setitem__("report_schema_version", 2),
    lambda r, e: e["audit"].__setitem__("dcr_share", 1.5),
    lambda r, e: e["audit"].pop("mia_auc"),
    lambda r, e: e["audit"].pop("owner_only"),
    lambda r, e: e.__setitem__("owner_only", False),
    lambda r, e: r["ledger"][0].__setitem__("sampling_rate", 0),
    lambda r, e: e["quality"]["columns"][0].__setitem__("metric", "Made-up"),
    lambda r, e: r.__setitem__("dp", False),  # a non-DP report must carry the warning
])
def test_the_schema_rejects_broken_documents(
    fitted_report: dict[str, Any], fitted_evaluation: dict[str, Any], break_it: Any
) -> None:
    report, evaluation = copy.deepcopy(fitted_report), copy.deepcopy(fitted_evaluation)
    break_it(report, evaluation)
    errors = [*validator().iter_errors(report), *evaluation_validator().iter_errors(evaluation)]
    assert errors != []


def test_jsonable_makes_strict_json() -> None:
    doc = jsonable({"a": float("nan"), "b": [float("inf"), 1.0], "c": pd.Series([1]).iloc[0]})
    assert json.dumps(doc, allow_nan=False) == '{"a": null, "b": [null, 1.0], "c": 1}'
