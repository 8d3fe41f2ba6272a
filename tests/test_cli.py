"""The command line: a real run on a plain CSV, --help everywhere, clear errors."""

from __future__ import annotations

import json
import os
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
    # no run timings in the public report (they grow with the exact row count)
    assert "timings" not in report and "_s\"" not in rep.read_text()
    last = result.stderr.strip().splitlines()[-1]  # the closing line names every file
    assert "spent ε" in last and all(str(p) in last for p in (out, rep, rep.with_suffix(".html")))
    assert report["run"]["input"] == "people.csv" and "--rows 123" in report["run"]["command"]


@pytest.mark.parametrize("command", [[], ["run"], ["sample"]])
def test_every_command_has_help(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0
    assert "Usage" in result.output


def test_bad_input_exits_2_with_a_sentence_and_no_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"name\n" + b"Jos\xe9\n" * 40)
    result = runner.invoke(app, ["run", str(bad), "--out", str(tmp_path / "o.csv"),
                                 "--encoding", "utf-8"])
    assert result.exit_code == 2
    assert "not utf-8 text (byte 0xe9 at offset 8), the encoding given" in result.output
    assert "--encoding" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "o.csv").exists()


def test_unknown_device_and_budget_errors_are_clear(people: pd.DataFrame, tmp_path: Path) -> None:
    src = tmp_path / "p.csv"
    people.to_csv(src, index=False)
    result = runner.invoke(app, ["run", str(src), "--device", "tpu"])
    assert result.exit_code == 2 and "--device" in result.output
    result = runner.invoke(app, ["run", str(src), "--epsilon", "0"])
    assert result.exit_code == 2 and "epsilon" in result.output


@pytest.fixture
def no_table_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reading the table fails the test: the checks must come first."""
    import synthgen.io

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the table was read before the output paths were checked")

    monkeypatch.setattr(synthgen.io, "read_table", refuse)


@pytest.mark.parametrize(("option", "value", "says"), [
    ("--out", "{missing}/x.csv", "does not exist"),
    ("--report", "{missing}/report.json", "does not exist"),
    ("--save-model", "{missing}/model.zip", "does not exist"),
    ("--out", "{folder}", "is a folder"),
    ("--report", "{html_folder}/report.json", "is a folder"),
    ("--out", "{input}", "is the input file"),
    ("--save-model", "{out}", "different files"),
])
def test_an_output_path_error_exits_2_before_any_row_is_read(
        no_table_read: None, tmp_path: Path, option: str, value: str, says: str) -> None:
    src = tmp_path / "people.csv"
    src.write_text("a,b\n1,2\n")
    (tmp_path / "html" / "report.html").mkdir(parents=True)  # where the HTML would go
    paths = {"missing": tmp_path / "no" / "such", "folder": tmp_path, "input": src,
             "html_folder": tmp_path / "html", "out": tmp_path / "syn.csv"}
    args = ["run", str(src), "--out", str(tmp_path / "syn.csv"), option, value.format(**paths)]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and says in lines[0] and "bad-output-path" in lines[0]
    assert option.split()[0] in lines[0] and "Traceback" not in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["html", "people.csv"]


def test_sample_and_remote_download_check_their_output_first(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "x.csv"
    result = runner.invoke(app, ["sample", str(tmp_path / "model.zip"), "--rows", "5",
                                 "--out", str(missing)])
    assert result.exit_code == 2 and "does not exist" in result.output
    # Before any request: no server at this URL, yet the answer is the usage error.
    result = runner.invoke(app, ["remote", "--url", "http://127.0.0.1:9", "--api-key", "k",
                                 "jobs", "download", "job_x", "-o", str(missing)])
    assert result.exit_code == 2 and "does not exist" in result.output


def _commands(group: object, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [path]
    commands = getattr(group, "commands", None)  # a group (typer vendors its own click)
    if isinstance(commands, dict):
        for name, command in commands.items():
            found += _commands(command, (*path, name))
    return found


def test_help_has_no_type_labels_or_markup() -> None:
    """Plain help on every command: no <bool> labels on flags, no RST backticks, no boxes."""
    import typer.main

    commands = _commands(typer.main.get_command(app))
    assert len(commands) > 15
    for command in commands:
        result = runner.invoke(app, [*command, "--help"])
        assert result.exit_code == 0, command
        text = result.output
        assert "<bool>" not in text and "`" not in text and "╭" not in text, (command, text)


def test_errors_are_one_line_at_any_terminal_width(tmp_path: Path) -> None:
    deep = tmp_path / ("a-long-folder-name-" * 6) / "x.csv"
    src = tmp_path / "p.csv"
    src.write_text("a\n1\n")
    result = subprocess.run([sys.executable, "-m", "synthgen", "run", str(src), "--out",
                             str(deep)], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "COLUMNS": "40"})
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and str(deep) in result.stderr


def test_the_cli_starts_without_torch_pandas_or_the_service() -> None:
    """What keeps synthgen --help and synthgen remote ... fast (bench/cli_start.py)."""
    script = (
        "import sys\n"
        "from synthgen.cli import app\n"
        "for args in (['--help'], ['remote', '--url', 'http://127.0.0.1:9', '--api-key', 'k',"
        " 'jobs', 'status', 'job_x']):\n"
        "    try:\n"
        "        app(args, standalone_mode=False)\n"
        "    except BaseException:\n"
        "        pass\n"
        "heavy = ('torch', 'pandas', 'numpy', 'opacus', 'fastapi', 'sqlalchemy', 'celery',"
        " 'api', 'workers', 'pydantic_settings')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=60)
    assert result.stdout.strip().splitlines()[-1] == "[]", result.stdout + result.stderr


def test_an_epsilon_below_the_minimum_exits_2_before_reading_the_table(tmp_path: Path) -> None:
    src, out = tmp_path / "t.csv", tmp_path / "out.csv"
    src.write_bytes(b"\xff\xfe not a table")  # reading it would fail with another error
    result = runner.invoke(app, ["run", str(src), "--epsilon", "0.01", "--out", str(out)])
    assert result.exit_code == 2
    assert "epsilon-out-of-range" in result.output and not out.exists()


def test_training_threads_default_to_the_cores_other_processes_leave_free(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Threads beyond the free cores spin against the other processes (6 epochs of Adult on
    2 cores beside two busy ones: 51 s on one thread, 131 s on two), so the default counts the
    cores busy now."""
    from synthgen import threads as local  # the library's policy, the CLI's default

    cores = len(os.sched_getaffinity(0))
    monkeypatch.setattr(local, "_busy_cores", lambda window_s: 0.05)
    assert local.free_cores() == cores
    monkeypatch.setattr(local, "_busy_cores", lambda window_s: cores + 1.0)
    assert local.free_cores() == 1
    monkeypatch.setattr(local, "_busy_cores", lambda window_s: 0.9)
    assert local.free_cores() == max(1, cores - 1)
    assert 0.0 <= local._busy_cores(0.05) <= os.cpu_count()  # the real reading, from /proc/stat
