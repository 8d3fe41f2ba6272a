"""``synthgen run --report``: JSON and HTML beside it, the holdout split, --target, --no-audit."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pandas as pd
import pytest
from conftest import make_people
from test_report_schema import one_torch_thread
from typer.testing import CliRunner

from synthgen.cli import app

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = json.loads((ROOT / "docs" / "report.schema.json").read_text(encoding="utf-8"))
runner = CliRunner()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("cli")
    src, schema = folder / "people.csv", folder / "schema.json"
    make_people(500, 0).to_csv(src, index=False)
    schema.write_text(json.dumps({"columns": [
        {"name": "city", "kind": "categorical", "categories": ["Lyon", "Paris", "Nice", "Lille"],
         "nullable": True},
    ]}))
    return src, schema


def run(src: Path, schema: Path, out: Path, *extra: str) -> str:
    with one_torch_thread():
        result = runner.invoke(app, [
            "run", str(src), "--schema", str(schema), "--out", str(out), "--epsilon", "1",
            "--epochs", "1", "--accountant", "rdp", "--seed", "0", "--quiet", *extra])
    assert result.exit_code == 0, result.output
    return result.output


def test_report_json_validates_and_html_is_written_beside_it(
    inputs: tuple[Path, Path], tmp_path: Path
) -> None:
    src, schema = inputs
    out, rep = tmp_path / "syn.csv", tmp_path / "report.json"
    run(src, schema, out, "--report", str(rep), "--target", "member", "--holdout-share", "0.2")
    report = json.loads(rep.read_text(encoding="utf-8"))
    assert list(jsonschema.Draft202012Validator(SCHEMA).iter_errors(report)) == []
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    # The public page: the epsilon curve only; the owner-only plots are on the evaluation page.
    assert page.startswith("<!DOCTYPE html>") and page.count("<svg") == 1
    assert "For the data owner only" not in page
    evaluation = json.loads((tmp_path / "evaluation.json").read_text(encoding="utf-8"))
    owner_page = (tmp_path / "evaluation.html").read_text(encoding="utf-8")
    assert owner_page.count("<svg") == 3 and "For the data owner only" in owner_page
    # About 100 rows held out before training, each row on its own (Poisson); the output has
    # about as many rows as the input: the DP row count of the training rows over the public
    # share kept for training (the one rule of the library, the CLI and the service; no exact
    # count enters it)
    held, trained = evaluation["holdout"]["rows"], evaluation["holdout"]["training_rows"]
    assert 60 < held < 140 and held + trained == 500 and abs(report["rows"] - trained) < 60
    assert evaluation["holdout"]["used_for"] == ["audit", "utility"]
    assert len(pd.read_csv(out)) == report["output_rows"] == round(report["rows"] / 0.8)
    assert evaluation["audit"]["holdout_rows"] == held
    assert evaluation["utility"]["target"] == "member"
    assert evaluation["utility"]["test_rows"] == held
    # the public report says what the guarantee covers, and not which or how many rows
    assert report["split"]["method"] == "poisson" and report["split"]["holdout_share"] == 0.2
    assert "with respect to the input table" in page and str(held) not in report["split"]["note"]
    assert evaluation["quality"]["synthetic_rows"] == report["output_rows"]


def test_no_audit_trains_on_every_row(inputs: tuple[Path, Path], tmp_path: Path) -> None:
    src, schema = inputs
    rep = tmp_path / "r.json"
    run(src, schema, tmp_path / "syn.csv", "--report", str(rep), "--no-audit")
    report = json.loads(rep.read_text(encoding="utf-8"))
    evaluation = json.loads((tmp_path / "r-evaluation.json").read_text(encoding="utf-8"))
    assert "audit" not in evaluation and evaluation["holdout"] is None
    assert abs(report["rows"] - 500) < 60  # a DP estimate of the 500 rows
    assert "--no-audit" in evaluation["skipped"]["audit"]
    assert "quality" in evaluation  # the quality section needs no holdout
    assert (tmp_path / "r.html").exists() and (tmp_path / "r-evaluation.html").exists()


def test_a_wrong_target_fails_before_training(inputs: tuple[Path, Path], tmp_path: Path) -> None:
    src, _ = inputs
    out = tmp_path / "syn.csv"
    result = runner.invoke(app, ["run", str(src), "--out", str(out), "--report",
                                 str(tmp_path / "r.json"), "--target", "salary"])
    assert result.exit_code == 2 and "salary" in result.output and "not a column" in result.output
    assert not out.exists()
