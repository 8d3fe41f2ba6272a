"""A seed is a secret like a key: anyone who knows it regenerates the run's noise and
subtracts it (issue 22: a report's command line gave ``--seed 3`` and with it the exact row
count). A seeded run writes the seed into no output; an unseeded one draws from OS entropy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
from conftest import make_people

from synthgen.models.trainer import noise_rng
from synthgen.report import SEEDED_NOTE, public_command

SEED = "918273645"


def _outputs_hold(folder: Path, *names: str) -> dict[str, list[str]]:
    """Which of ``names`` each output file holds (the model zip's members decompressed)."""
    found: dict[str, list[str]] = {}
    for path in sorted(folder.iterdir()):
        blobs = [path.read_bytes()]
        if path.suffix == ".zip":
            with zipfile.ZipFile(path) as zf:
                blobs = [zf.read(member) for member in zf.namelist()]
        hits = [n for n in names if any(n.encode() in b for b in blobs)]
        if hits:
            found[path.name] = hits
    return found


def test_a_seeded_run_writes_its_seed_nowhere(tmp_path: Path) -> None:
    src = tmp_path / "in" / "people.csv"
    src.parent.mkdir()
    make_people(400, 0).to_csv(src, index=False)
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "synthgen", "run", str(src), "--epsilon", "1", "--epochs", "1",
         "--seed", SEED, "--threads", "1", "--quiet", "--out", str(out / "syn.csv"),
         "--report", str(out / "report.json"), "--save-model", str(out / "model.zip")],
        capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert {"report.json", "report.html", "model.zip"} <= {p.name for p in out.iterdir()}
    assert _outputs_hold(out, SEED, "--seed") == {}
    assert SEED not in done.stdout + done.stderr
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert report["run"]["command"].startswith("synthgen run ")  # the rest of the command
    assert report["secure_mode"]["seeded"] is True
    assert report["secure_mode"]["note"] == SEEDED_NOTE
    assert "keep the seed secret" in (out / "report.html").read_text(encoding="utf-8")
    # nor run timings (they grow with the exact row count): the owner-only evaluation has them
    with zipfile.ZipFile(out / "model.zip") as zf:
        assert "timings" not in json.loads(zf.read("meta.json"))["info"]
    assert "timings" not in report
    evaluation = json.loads((out / "evaluation.json").read_text(encoding="utf-8"))
    assert evaluation["timings"]["total_s"] > 0


def test_the_published_command_drops_the_seed_in_both_spellings() -> None:
    argv = ["run", "t.csv", "--seed", "3", "--epsilon", "1", "--seed=4", "--seed-rows", "s.csv"]
    assert public_command(argv) == ["run", "t.csv", "--epsilon", "1", "--seed-rows", "s.csv"]


def test_unseeded_noise_comes_from_fresh_entropy() -> None:
    # Two unseeded generators never agree; numpy's global seed does not reach them.
    np.random.seed(0)
    a = noise_rng(None).standard_normal(4)
    np.random.seed(0)
    b = noise_rng(None).standard_normal(4)
    assert not np.array_equal(a, b)
    assert np.array_equal(noise_rng(5).standard_normal(4), noise_rng(5).standard_normal(4))
    assert not np.array_equal(noise_rng(5, 1).standard_normal(4), noise_rng(5).standard_normal(4))
