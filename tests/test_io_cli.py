"""``synthgen run`` reads a semicolon, Windows-1252, decimal-comma file: detected, or as told."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from synthgen.cli import app

runner = CliRunner()


def _european(path: Path, n: int = 300) -> Path:
    rows = "".join(f"{20 + i % 50};{'Köln' if i % 3 else 'Zürich'};{i % 40},{i % 10}\n"
                   for i in range(n))
    path.write_bytes(("age;city;hours\n" + rows).encode("cp1252"))
    return path


def test_run_reads_a_european_file_with_its_options(tmp_path: Path) -> None:
    src, out, rep = _european(tmp_path / "eu.csv"), tmp_path / "o.csv", tmp_path / "r.json"
    result = runner.invoke(app, ["run", str(src), "--out", str(out), "--report", str(rep),
                                 "--epochs", "1", "--seed", "0", "--rows", "50", "--no-audit",
                                 "--holdout-share", "0", "--decimal", ","])
    assert result.exit_code == 0, result.output
    assert "read as Windows-1252" in result.output  # the warning of the detected encoding
    synthetic = pd.read_csv(out)
    assert list(synthetic.columns) == ["age", "city", "hours"] and len(synthetic) == 50
    assert pd.api.types.is_float_dtype(synthetic["hours"])
    # the released categories are the decoded names (an 'Other' bucket may come with them)
    assert "Köln" in set(synthetic["city"]) and set(synthetic["city"].dropna()) <= {
        "Köln", "Zürich", "Other"}
    kinds = {c["name"]: c["kind"] for c in json.loads(rep.read_text())["columns"]}
    assert kinds["hours"] == "continuous"


def test_bad_read_options_exit_2_before_any_work(tmp_path: Path) -> None:
    src = _european(tmp_path / "eu.csv")
    for option, value, said in (("--delimiter", "ab", "not one character"),
                                ("--encoding", "klingon", "unknown encoding"),
                                ("--decimal", "x", "decimal mark")):
        result = runner.invoke(app, ["run", str(src), "--out", str(tmp_path / "o.csv"),
                                     option, value])
        assert result.exit_code == 2 and said in result.output, result.output
        assert "invalid-argument" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "o.csv").exists()
