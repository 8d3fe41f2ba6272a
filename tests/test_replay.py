"""The replay test: nothing outside the ledger reads the table's rows.

A fit of a table D records what every release returned (the size probe, the domain histograms,
the one-way tables, the pair-selection scores, the two-way tables, and DP-SGD's noisy clipped
gradient sum of every step). A fit of another table D' with the same header and seed then
replays those values instead of reading D'. If every read of the rows is a release, D' cannot
change anything: the model (its meta.json but for timings, and its weights' bytes) and the rows
sampled from it must be byte for byte those of D's fit. A read outside the releases (an exact
count, a dtype, an unnoised null share, a selection on exact scores, the exact row count in the
fit info) makes them differ, whatever it is called.

D' is each neighbour of D (a row added, holding a new category, an empty cell and an extreme
number; a row removed; a row changed, its number turned into a text), and a table with nothing
in common with D but its header (five times the rows, other values, other related pairs, many
empty cells, dates written in another format): small leaks move a discrete decision only when
the table moves a lot.

DP-SGD: a step's release is the noisy sum the discriminator's update is made of (the real
rows' clipped gradients, the fake rows' gradients, the noise). A replayed step samples no row
and returns the recorded sum; the fake rows' part is a function of the generator and of the
generator's own draws, which come from a generator apart from the mechanism's (the Poisson
draws, the real rows' condition columns and the noise are the release's private generator), so
it is the same in both fits when nothing else differs. So the replay covers everything around
the step: the sampling rate, the batch size, the number of steps, the weight average, the
generator's steps. It does not check the release itself (that the noise and clipping are what
the ledger charges: tests/test_release.py, tests/test_privacy_pinned.py and the audits do).

What it does not cover: reads before the fit (the CLI's and the service's own, e.g. the
holdout split, which happens before ``fit``), and what a fit publishes while it runs (progress
events: the displayed discriminator loss includes the real rows' loss unnoised; it goes to the
data owner's console only). It runs on a CPU (CUDA graphs are not recorded).
"""

from __future__ import annotations

import io
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from synthgen import Synthesizer
from synthgen.models.trainer import TrainingConfig
from synthgen.privacy.release import Recording, ReplayError

CONFIG = TrainingConfig(epochs=2.0, d_hidden=(16,), g_hidden=(16,), noise_dim=8,
                        table_warmup_steps=20, table_rows=128)


def _table(rows: int, seed: int, related: tuple[str, str] = ("city", "job"),
           null_share: float = 0.05, date_format: str = "%Y-%m-%d") -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    city = rng.choice(["Paris", "Lyon", "Nice", "Lille"], rows, p=[0.4, 0.3, 0.2, 0.1])
    job = rng.choice(["nurse", "cook", "clerk"], rows)
    if related == ("city", "job"):
        job = np.array(["nurse", "cook", "clerk", "cook"])[
            pd.Index(["Paris", "Lyon", "Nice", "Lille"]).get_indexer(city)]
    age = rng.integers(18, 80, rows).astype(float)
    age[rng.random(rows) < null_share] = np.nan
    income = np.round(rng.lognormal(10, 0.6, rows), 2)
    if related == ("age", "income"):
        income = np.round(np.nan_to_num(age, nan=40.0) * 1000.0 + rng.normal(0, 50, rows), 2)
    member = rng.random(rows) < 0.3
    # written as text in a format its column's vote elects
    joined = (pd.Timestamp("2015-01-01") + pd.to_timedelta(rng.integers(0, 3000, rows), "D")
              ).strftime(date_format)
    # ZIP codes with leading zeros, each too thin for an unweighted histogram: the vote makes
    # it a code column, weighted in the histograms (its weight sized by DP counts only)
    zips = np.array([f"{z:05d}" for z in [*rng.integers(500, 9999, 8),
                                          *rng.integers(10000, 99999, 4)]])
    zip_code = rng.choice(zips, rows)
    return pd.DataFrame({"city": city, "job": job, "age": age, "income": income,
                         "member": member, "joined": joined, "zip": zip_code})


def _fit(df: pd.DataFrame, **fit_args: Any) -> Synthesizer:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Synthesizer(epsilon=2.0, seed=0, device="cpu", config=CONFIG).fit(df, **fit_args)


def _published(synth: Synthesizer, tmp_path: Path) -> dict[str, bytes]:
    """What the fit publishes: the model's files (meta.json: schema, domains, ledger, fit
    info; the weights) byte for byte, and 400 rows sampled from it."""
    path = tmp_path / "model.zip"
    synth.save(path)
    with zipfile.ZipFile(path) as zf:
        files = {name: zf.read(name) for name in zf.namelist()}
    sample = io.StringIO()
    synth.sample(400, seed=1).to_csv(sample, index=False)
    return {"meta": files.pop("meta.json"), "weights": files.pop("generator.pt"),
            "sample": sample.getvalue().encode(), **files}


@pytest.fixture(scope="module")
def base() -> pd.DataFrame:
    return _table(400, seed=0)


@pytest.fixture(scope="module")
def recorded(base: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory
             ) -> tuple[Recording, dict[str, bytes]]:
    synth = _fit(base, record_releases=True)
    assert synth.recording is not None
    return synth.recording, _published(synth, tmp_path_factory.mktemp("recorded"))


def _neighbours(base: pd.DataFrame) -> dict[str, pd.DataFrame]:
    added = pd.concat([base, pd.DataFrame({"city": ["Atlantis"], "job": [None],
                                           "age": [1e9], "income": [-5.0],
                                           "member": [True], "joined": ["1900-02-29?"],
                                           "zip": ["00001"]})],
                      ignore_index=True)
    changed = base.astype({"age": object}).copy()
    changed.loc[7, "age"] = "unknown"
    changed.loc[7, "city"] = "Lille"
    return {
        "added": added,
        "removed": base.iloc[1:].reset_index(drop=True),
        "changed": changed,
        # only the header in common
        "unrelated": _table(2000, seed=9, related=("age", "income"), null_share=0.4,
                            date_format="%d/%m/%Y"),
    }


def test_the_recording_holds_every_release(
        recorded: tuple[Recording, dict[str, bytes]]) -> None:
    recording, _ = recorded
    names = [name for name, _ in recording.releases]
    assert names == ["gaussian_row_count", "gaussian_format_votes", "gaussian_histograms",
                     "gaussian_one_way_marginals", "gaussian_pair_selection",
                     "gaussian_two_way_marginals"]
    assert len(recording.gradients) > 5  # one noisy gradient sum per DP-SGD step


@pytest.mark.parametrize("neighbour", ["added", "removed", "changed", "unrelated"])
def test_a_table_replaying_the_releases_gives_the_same_model_and_rows(
    neighbour: str, base: pd.DataFrame, recorded: tuple[Recording, dict[str, bytes]],
    tmp_path: Path,
) -> None:
    recording, expected = recorded
    other = _neighbours(base)[neighbour]
    replayed = _published(_fit(other, replay=recording), tmp_path)
    assert replayed.keys() == expected.keys()
    for part in expected:
        assert replayed[part] == expected[part], f"{part} differs on the {neighbour} table"


def test_without_the_replay_the_tables_give_other_models(
    base: pd.DataFrame, recorded: tuple[Recording, dict[str, bytes]], tmp_path: Path
) -> None:
    """The comparison can fail: the same seed on the removed-row neighbour, reading it (fresh
    noise from the same seed, on other counts), gives another model and other rows."""
    _, expected = recorded
    other = _published(_fit(_neighbours(base)["removed"]), tmp_path)
    assert other["weights"] != expected["weights"]
    assert other["sample"] != expected["sample"]


def test_a_replay_that_asks_for_other_releases_stops(
        base: pd.DataFrame, recorded: tuple[Recording, dict[str, bytes]]) -> None:
    """A fit whose sequence of releases differs from the recording's (here: a declared
    schema, so no size probe) is refused, not silently given other values."""
    from synthgen.schema import TableSchema

    recording, _ = recorded
    with pytest.raises(ReplayError):
        Synthesizer(epsilon=2.0, seed=0, device="cpu", config=CONFIG,
                    preprocessing_share=0.2,
                    schema=TableSchema(columns=[])).fit(base, replay=recording)
