"""End to end on small tables: shape, budget, exact stop, cancel, resume, artifact."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from synthgen import Synthesizer, SynthgenWarning
from synthgen.models.trainer import TrainingProgress

FIXED_MECHANISMS = ["gaussian_row_count", "gaussian_format_votes", "gaussian_histograms",
                    "gaussian_one_way_marginals", "gaussian_pair_selection"]


def test_fit_and_sample_keep_columns_dtypes_and_budget(people: pd.DataFrame) -> None:
    synth = Synthesizer(epsilon=1.0, epochs=5, seed=0).fit(people)
    out = synth.sample()
    # as many rows as the DP row count (the exact count is not released)
    assert len(out) == synth.info["rows"] and abs(len(out) - len(people)) < 100
    assert list(out.columns) == list(people.columns)
    # kinds, nullability and so dtypes are DP decisions (at 500 rows the 5 % of empty cells
    # in income, city and children are near the null threshold)
    assert out.dtypes.astype(str).tolist() == [
        "category" if d.dtype == "object" else d.dtype for d in synth.domains]
    assert out.dtypes.astype(str).tolist()[:5] == [
        "int64", "float64", "category", "bool", "datetime64[ns]"]
    for name, domain in zip(out.columns, synth.domains, strict=True):
        assert domain.nullable or out[name].notna().all()
    report = synth.report()
    assert report["epsilon"] <= report["target_epsilon"] == 1.0
    assert report["delta"] <= 1e-5
    # the two-way tables are released only for the pairs the DP selection picked: at 500 rows
    # the people table's weak links may select none (then there is no two-way entry)
    mechanisms = [e["mechanism"] for e in report["ledger"]]
    assert mechanisms in ([*FIXED_MECHANISMS, "gaussian_two_way_marginals", "dp_sgd"],
                          [*FIXED_MECHANISMS, "dp_sgd"])
    assert {"rows", "columns", "accountant", "ledger"} <= set(report)
    assert "timings" not in report  # they grow with the exact row count: not public
    assert synth.sample(37).shape == (37, people.shape[1])


def test_fit_warns_about_dropped_columns_and_other_folds() -> None:
    """Python users hear what the report lists, through warnings (filterable by class)."""
    n = 3000
    df = pd.DataFrame({
        "age": np.random.default_rng(0).integers(18, 90, n),
        "email": [f"user{i}@example.org" for i in range(n)],  # an identifier: dropped
        "rel": ["Husband"] * (n // 2) + [f"r{i % 40}" for i in range(n - n // 2)],  # folds
    })
    with pytest.warns(SynthgenWarning) as caught:
        synth = Synthesizer(epsilon=1.0, epochs=1, seed=0).fit(df)
    messages = [str(w.message) for w in caught if w.category is SynthgenWarning]
    assert messages == synth.report()["warnings"]
    assert any("'email' dropped" in m for m in messages)
    assert any("'rel'" in m and "Other" in m for m in messages)
    assert all(w.filename == __file__ for w in caught)  # points at the caller's line
    # the records the service's job resource lists (code, column, figure)
    from synthgen.errors import warning_record

    records = {r["code"]: r for r in map(warning_record, messages)}
    assert records["column-dropped"]["column"] == "email"
    folded = records["values-folded-into-other"]
    assert folded["column"] == "rel" and 0.2 < folded["figure"] <= 1
    assert f"{folded['figure']:.0%}" in folded["message"]


def test_fit_takes_the_clis_thread_policy_and_gives_the_threads_back(
    people: pd.DataFrame, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Left at torch's default (a thread per core), fit beside two busy processes ran 17x
    slower than ``synthgen run``: the library picks the CLI's default (the free cores, or
    $SYNTHGEN_TRAIN_THREADS), ``threads=`` overrides it, and the caller's setting is restored."""
    from synthgen import threads

    seen: list[int] = []

    def watch(p: TrainingProgress) -> None:
        seen.append(torch.get_num_threads())

    before = torch.get_num_threads()
    monkeypatch.delenv("SYNTHGEN_TRAIN_THREADS", raising=False)
    monkeypatch.setattr(threads, "usable_cores", lambda: 4)
    monkeypatch.setattr(threads, "_busy_cores", lambda window_s: 2.2)  # two busy processes
    Synthesizer(epsilon=1.0, epochs=1, seed=0, progress=False).fit(people, on_progress=watch)
    assert set(seen) == {2} and torch.get_num_threads() == before
    seen.clear()
    Synthesizer(epsilon=1.0, epochs=1, seed=0, threads=3, progress=False).fit(
        people, on_progress=watch)
    assert set(seen) == {3} and torch.get_num_threads() == before
    seen.clear()
    monkeypatch.setenv("SYNTHGEN_TRAIN_THREADS", "1")
    Synthesizer(epsilon=1.0, epochs=1, seed=0, progress=False).fit(people, on_progress=watch)
    assert set(seen) == {1}
    with pytest.raises(ValueError, match="threads must be at least 1"):
        Synthesizer(epsilon=1.0, threads=0)


def test_fit_draws_a_progress_bar_where_asked(
    people: pd.DataFrame, capsys: pytest.CaptureFixture[str],
) -> None:
    """progress=True draws the CLI's bar on stderr (a notebook's output cell under Jupyter);
    the default draws one only on a terminal or in a notebook, so a pipe or a test gets none."""
    Synthesizer(epsilon=1.0, epochs=1, seed=0, progress=True).fit(people)
    err = capsys.readouterr().err
    assert "epoch" in err and "ε" in err and "/1" in err
    Synthesizer(epsilon=1.0, epochs=1, seed=0).fit(people)
    assert "epoch" not in capsys.readouterr().err


def test_training_stops_exactly_at_the_budget(people: pd.DataFrame) -> None:
    synth = Synthesizer(epsilon=2.0, epochs=5, seed=1).fit(people)
    training = synth.info["training"]
    assert training["steps"] == training["planned_steps"]
    spent = synth.report()["epsilon"]
    assert 0.97 * 2.0 <= spent <= 2.0  # the whole budget is used, and never more


def test_rdp_accountant_is_selectable(people: pd.DataFrame) -> None:
    report = Synthesizer(epsilon=1.0, epochs=2, seed=0, accountant="rdp").fit(people).report()
    assert report["accountant"] == "rdp" and report["epsilon"] <= 1.0


def test_cancel_stops_early_and_the_ledger_holds_the_steps_run(people: pd.DataFrame) -> None:
    seen: list[TrainingProgress] = []
    synth = Synthesizer(epsilon=1.0, epochs=5, seed=0)
    synth.fit(people, on_progress=seen.append, should_stop=lambda: len(seen) >= 3)
    sgd = synth.report()["ledger"][-1]
    assert sgd["steps"] == seen[-1].step < sgd["params"]["planned_steps"]
    assert synth.report()["epsilon"] < 1.0
    assert synth.report()["completed"] is False
    assert all(p.epsilon <= 1.0 for p in seen)


class _Crash(Exception):
    pass


def test_resume_continues_without_spending_the_budget_twice(
    people: pd.DataFrame, tmp_path: Path
) -> None:
    ckpt = tmp_path / "job.ckpt"

    def crash(p: TrainingProgress) -> None:
        if p.step >= 20:
            raise _Crash

    first = Synthesizer(epsilon=1.0, epochs=5, seed=3)
    with pytest.raises(_Crash):
        first.fit(people, on_progress=crash, checkpoint_path=ckpt, checkpoint_every_s=0)
    assert ckpt.exists()
    pre_entry = first.ledger.entries[0]  # type: ignore[union-attr]

    resumed: list[TrainingProgress] = []
    second = Synthesizer(epsilon=1.0, epochs=5, seed=3)
    second.fit(people, on_progress=resumed.append, checkpoint_path=ckpt)
    assert resumed[0].step > 1  # it went on from the checkpoint, not from step 0
    assert second.ledger.entries[0] == pre_entry  # type: ignore[union-attr]
    report = second.report()
    assert report["ledger"][-1]["steps"] == report["training"]["planned_steps"]
    assert report["epsilon"] <= 1.0
    assert not ckpt.exists()


def test_saved_model_holds_no_training_row(people: pd.DataFrame, tmp_path: Path) -> None:
    df = people.copy()
    markers = [f"MARKER{i}QZX" for i in range(3)]
    df["city"] = df["city"].astype(object)
    df.loc[:2, "city"] = markers
    df.loc[:2, "income"] = [987654.125, 876543.375, 765432.625]
    synth = Synthesizer(epsilon=1.0, epochs=3, seed=0).fit(df)
    path = tmp_path / "model.zip"
    synth.save(path)
    with zipfile.ZipFile(path) as zf:
        blobs = [zf.read(name) for name in zf.namelist()]
    needles = [m.encode() for m in markers]
    for value in (987654.125, 876543.375, 765432.625):
        needles += [repr(value).encode(), np.float32(value).tobytes(), np.float64(value).tobytes()]
    for blob in blobs:
        for needle in needles:
            assert needle not in blob
    again = Synthesizer.load(path, device="cpu")
    sample = again.sample(50, seed=1)
    assert list(sample.columns) == list(df.columns)
    assert not set(markers) & set(sample["city"].dropna())
    assert again.report()["epsilon"] == pytest.approx(synth.report()["epsilon"])


def test_seeded_runs_are_reproducible(people: pd.DataFrame) -> None:
    a = Synthesizer(epsilon=1.0, epochs=2, seed=7).fit(people).sample(100, seed=1)
    b = Synthesizer(epsilon=1.0, epochs=2, seed=7).fit(people).sample(100, seed=1)
    pd.testing.assert_frame_equal(a, b)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA device"))])
def test_a_resumed_run_is_the_same_run(people: pd.DataFrame, tmp_path: Path, device: str) -> None:
    """A crash and a resume give the weights of the uninterrupted run. On CUDA the graphs draw
    from the device's default generator, whose state the checkpoint must carry."""
    ckpt = tmp_path / "job.ckpt"

    def crash(p: TrainingProgress) -> None:
        if p.step >= 12:
            raise _Crash

    whole = Synthesizer(epsilon=1.0, epochs=3, seed=5, device=device).fit(people)
    first = Synthesizer(epsilon=1.0, epochs=3, seed=5, device=device)
    with pytest.raises(_Crash):
        first.fit(people, on_progress=crash, checkpoint_path=ckpt, checkpoint_every_s=0)
    resumed = Synthesizer(epsilon=1.0, epochs=3, seed=5, device=device)
    resumed.fit(people, checkpoint_path=ckpt)
    for (name, a), b in zip(whole.generator.state_dict().items(),  # type: ignore[union-attr]
                            resumed.generator.state_dict().values(),  # type: ignore[union-attr]
                            strict=True):
        assert torch.equal(a, b), name
