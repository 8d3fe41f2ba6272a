"""``--where``, ``--rebalance`` and ``--seed-rows`` on ``synthgen run`` and ``synthgen sample``:
the rows they ask for, the report's ``sampling`` section, and clear errors."""

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


def invoke(*args: str) -> tuple[int, str]:
    with one_torch_thread():
        result = runner.invoke(app, list(args))
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict]:
    """``run --where`` with a report and a saved model: (model, output, report)."""
    folder = tmp_path_factory.mktemp("cond-cli")
    src, out, rep, model = (folder / "people.csv", folder / "syn.csv", folder / "report.json",
                            folder / "model.zip")
    make_people(800, 0).to_csv(src, index=False)
    schema = folder / "schema.json"
    schema.write_text(json.dumps({"columns": [
        {"name": "city", "kind": "categorical", "categories": ["Lyon", "Paris", "Nice", "Lille"],
         "nullable": True},
    ]}))
    code, output = invoke("run", str(src), "--schema", str(schema), "--out", str(out),
                          "--report", str(rep),
                          "--save-model", str(model), "--epsilon", "3", "--epochs", "2",
                          "--accountant", "rdp", "--seed", "0", "--rows", "300",
                          "--where", "age>=40", "--where", "member=true", "--no-audit")
    assert code == 0, output
    assert "conditions: age>=40, member=true" in output
    return model, out, json.loads(rep.read_text(encoding="utf-8"))


def test_run_where_honours_the_conditions_and_reports_them(trained: tuple[Path, Path, dict]
                                                           ) -> None:
    _, out, report = trained
    synthetic = pd.read_csv(out)
    assert len(synthetic) == 300
    assert (synthetic["age"] >= 40).all() and synthetic["member"].all()
    assert list(jsonschema.Draft202012Validator(SCHEMA).iter_errors(report)) == []
    assert report["sampling"]["conditions"] == ["age>=40", "member=true"]
    assert "no privacy budget" in report["sampling"]["note"]
    # quality (owner-only, in evaluation.json) compares with the real rows that meet the same
    # conditions
    evaluation = json.loads((trained[0].parent / "evaluation.json").read_text(encoding="utf-8"))
    assert "meet the conditions age>=40, member=true" in evaluation["compared_with"]
    assert evaluation["quality"]["real_rows"] < 800 * 0.5
    page = (trained[0].parent / "report.html").read_text(encoding="utf-8")
    assert "Conditioned output" in page and "age&gt;=40, member=true" in page


def test_sample_rebalances_and_fills_seed_rows(trained: tuple[Path, Path, dict],
                                               tmp_path: Path) -> None:
    model = trained[0]
    out = tmp_path / "rebalanced.csv"
    code, output = invoke("sample", str(model), "--rows", "2000", "--out", str(out),
                          "--rebalance", "city=Nice:0.5", "--seed", "1")
    assert code == 0, output
    rebalanced = pd.read_csv(out)
    assert (rebalanced["city"] == "Nice").mean() == 0.5
    # seed values the model does produce (a bin or category it released as empty never is)
    city = rebalanced["city"].dropna().mode()[0]
    age = int(rebalanced.loc[rebalanced["city"] == city, "age"].mode()[0])
    old_age = int(rebalanced["age"].max())
    seeds = tmp_path / "seeds.csv"
    seeds.write_text(f"city,age\n{city},{age}\n,{old_age}\nParis,\n")
    out = tmp_path / "seeded.csv"
    code, output = invoke("sample", str(model), "--seed-rows", str(seeds), "--out", str(out))
    assert code == 0, output
    filled = pd.read_csv(out)
    assert len(filled) == 3 and "3 seed rows" in output
    assert list(filled["city"].iloc[[0, 2]]) == [city, "Paris"]
    assert list(filled["age"].iloc[[0, 1]]) == [age, old_age]
    assert filled["income"].notna().any()


@pytest.mark.parametrize(("args", "words"), [
    (["--where", "town=Paris"], "no column 'town'"),
    (["--where", "age>=old"], "not a number"),
    (["--where", "age>50", "--where", "age<20"], "contradict"),
    (["--rebalance", "city=Nice:1.5"], "a share must be"),
    (["--rebalance", "city=Nice"], "COLUMN=VALUE:SHARE"),
])
def test_bad_conditions_stop_run_before_training(args: list[str], words: str,
                                                 tmp_path: Path) -> None:
    src, out = tmp_path / "p.csv", tmp_path / "o.csv"
    make_people(100, 0).to_csv(src, index=False)
    code, output = invoke("run", str(src), "--out", str(out), "--epochs", "50", *args)
    assert code == 2 and words in output and "Traceback" not in output
    assert not out.exists()


@pytest.mark.parametrize(("args", "words"), [
    (["--rows", "10", "--where", "city=Rome"], "'Rome' is not a category of city"),
    (["--rows", "10", "--rebalance", "age=40:0.5"], "categorical or boolean"),
    ([], "--rows is required"),
])
def test_bad_conditions_on_sample_exit_2(trained: tuple[Path, Path, dict], tmp_path: Path,
                                         args: list[str], words: str) -> None:
    out = tmp_path / "o.csv"
    code, output = invoke("sample", str(trained[0]), "--out", str(out), *args)
    assert code == 2 and words in output
    assert not out.exists()
