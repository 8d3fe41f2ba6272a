"""Every shell block of README.md runs as pasted, in order, in one shell, from a root holding the
repository's own example files: the README cannot drift from the code.

Three blocks are not run, by name below (NOT_RUN, with the reason): the install (this test
runs inside the installed environment), the test command (this suite) and the sources and
destinations, which name the reader's own database servers and bucket. Everything else runs as
written, but for two substitutions a shared test machine needs: the server's port (8000 in the
README, a free port here) and ``$SYNTHGEN_TRAINING``, the documented override of the training
defaults: one epoch of DP-SGD and 20 of the generator's 300 warm-up steps on the marginal tables
(the README's own example of it). The warm-up was half of a fit's time here, and the README's
conditions need no fidelity from it: at 20 steps the rows that meet ``sex=Female, Y=>50K`` are
8 % of the model's (4 % at 300), far above the 0.1 % under which sampling refuses a condition.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from service.svc_helpers import free_port

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
BLOCK = re.compile(r"^```(bash|python)\n(.*?)^```$", re.S | re.M)
# (what the block contains, why it is not run here): each must match exactly one block.
NOT_RUN = {
    "pip install torch": "the install: this test runs in the installed environment",
    "python -m pytest": "the test suite itself",
    "postgresql://analyst@db.internal": "sources and destinations: the reader's own database "
    "and bucket (placeholder hosts); the same options run against real PostgreSQL, SQLite and "
    "S3 servers in tests/test_sources.py",
}
QUICK = json.dumps({"epochs": 1, "table_warmup_steps": 20})


def blocks() -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in BLOCK.finditer(README.read_text("utf-8"))]


def script(port: int) -> str:
    """The README's blocks as one bash script: shell blocks as they are, Python blocks fed to
    ``python`` at their place in the order."""
    parts = ["set -eo pipefail"]
    skipped = dict.fromkeys(NOT_RUN, 0)
    for i, (language, text) in enumerate(blocks()):
        hit = [key for key in NOT_RUN if key in text]
        if hit:
            skipped[hit[0]] += 1
            continue
        parts.append(f"echo '--- README block {i} ({language})' >&2")
        if language == "python":
            parts.append(f"python - <<'README_PYTHON'\n{text}README_PYTHON")
        else:
            parts.append(text.replace(":8000", f":{port}").replace("--port 8000",
                                                                   f"--port {port}"))
    assert skipped == dict.fromkeys(NOT_RUN, 1), f"blocks left out: {skipped}"
    return "\n".join(parts) + "\n"


def test_the_readme_names_only_files_the_repository_ships() -> None:
    """Cheap, before the long run: every path the blocks read exists in the repository."""
    read = set()
    for _, text in blocks():
        read |= set(re.findall(r"(?<![\w/])((?:examples|tests)/[\w./-]+\.(?:csv|json|parquet))",
                               text))
    assert read and all((ROOT / path).is_file() for path in read), read
    assert "people.csv" not in README.read_text("utf-8")
    assert "partial.csv" not in README.read_text("utf-8")


def test_every_readme_shell_block_runs_as_pasted(tmp_path: Path) -> None:
    (tmp_path / "examples").symlink_to(ROOT / "examples", target_is_directory=True)
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("SYNTHGEN_") or k == "SYNTHGEN_TRAIN_THREADS"}
    env.update(SYNTHGEN_TRAINING=QUICK, PYTHONPATH=os.pathsep.join(
        p for p in (str(ROOT), env.get("PYTHONPATH")) if p))
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    proc = subprocess.Popen(["bash", "-c", script(port)], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=1200)
    finally:  # the README's server, if a block failed before its `kill $SERVER`
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert proc.returncode == 0, f"stdout:\n{out[-3000:]}\nstderr:\n{err[-6000:]}"

    files = tmp_path / "out"
    assert not (tmp_path / "=60").exists()  # a condition the shell took for a redirection
    for name in ("synthetic.csv", "report.html", "evaluation.html", "service.csv",
                 "service-report.json", "remote.csv", "adult-3.csv", "model.zip",
                 "adult_released.json", "second.csv"):
        assert (files / name).stat().st_size > 0, name
    assert len(pd.read_csv(files / "more.csv")) == 100_000
    women = pd.read_csv(files / "women.csv")
    assert len(women) == 10_000 and set(women["sex"]) == {"Female"} and set(women["Y"]) == {
        ">50K"}
    sixties = pd.read_csv(files / "sixties.csv")
    assert len(sixties) == 5_000 and sixties["age"].between(60, 69).all()
    balanced = pd.read_csv(files / "balanced.csv")
    assert (balanced["Y"] == ">50K").sum() == 50_000
    filled, seeds = pd.read_csv(files / "filled.csv"), pd.read_csv(ROOT / "examples" /
                                                                    "seed_rows.csv")
    assert len(filled) == len(seeds)
    kept = seeds.notna()
    assert (filled[seeds.columns][kept] == seeds[kept]).sum().sum() == kept.sum().sum()
    # the service's job and `remote jobs wait`: the job succeeded, and wait printed the
    # warnings of the table uploaded without its schema before the status
    assert "succeeded" in out
    assert re.search(r"^warning: column '[\w-]+': \d+% of its values fold into", err, re.M)
    # $SYNTHGEN_TRAINING reached every fit, the service's included
    report = json.loads((files / "service-report.json").read_text("utf-8"))
    assert report["training"]["config"]["epochs"] == 1
    assert report["training"]["config"]["table_warmup_steps"] == 20


@pytest.mark.parametrize("bad, why", [
    ("synthgen sample out/model.zip --rows 5 --where age>=60", "unquoted condition"),
    ("synthgen run people.csv --epsilon 1", "a file the repository does not ship"),
])
def test_the_readme_test_would_catch(bad: str, why: str, tmp_path: Path) -> None:
    """What issue 24 found in the README fails in a shell as the test runs it."""
    (tmp_path / "examples").symlink_to(ROOT / "examples", target_is_directory=True)
    done = subprocess.run(["bash", "-c", f"set -eo pipefail\n{bad}\n"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode != 0, why
