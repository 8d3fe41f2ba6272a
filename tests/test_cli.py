"""The command line: a real run on a plain CSV, --help everywhere, clear errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from synthgen.cli import app

runner = CliRunner()


def test_run_writes_csv_and_report_from_a_plain_csv(people: pd.DataFrame, tmp_path: Path) -> None:
    src, out, rep = tmp_path / "people.csv", tmp_path / "syn.csv", tmp_path / "report.json"
    people.to_csv(src, index=False)  # header row, empty cells for missing values
    result = subprocess.run(
        [sys.executable, "-m", "synthgen", "run", str(src), "--epsilon", "1", "--out", str(out),
         "--report", str(rep), "--epochs", "2", "--seed", "0", "--rows", "123"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    synthetic = pd.read_csv(out)
    assert list(synthetic.columns) == list(people.columns) and len(synthetic) == 123
    report = json.loads(rep.read_text())
    assert report["epsilon"] <= report["target_epsilon"] == 1.0
    assert report["output_rows"] == 123
    assert report["timings"]["total_s"] > 0
    assert "spent ε" in result.stderr  # the closing summary


@pytest.mark.parametrize("command", [[], ["run"], ["sample"]])
def test_every_command_has_help(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0
    assert "Usage" in result.output


def test_bad_input_exits_2_with_a_sentence_and_no_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"name\n" + b"Jos\xe9\n" * 40)
    result = runner.invoke(app, ["run", str(bad), "--out", str(tmp_path / "o.csv")])
    assert result.exit_code == 2
    assert "UTF-8" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "o.csv").exists()


def test_unknown_device_and_budget_errors_are_clear(people: pd.DataFrame, tmp_path: Path) -> None:
    src = tmp_path / "p.csv"
    people.to_csv(src, index=False)
    result = runner.invoke(app, ["run", str(src), "--device", "tpu"])
    assert result.exit_code == 2 and "--device" in result.output
    result = runner.invoke(app, ["run", str(src), "--epsilon", "0"])
    assert result.exit_code == 2 and "epsilon" in result.output
