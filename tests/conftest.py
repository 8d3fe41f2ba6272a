"""Shared fixtures: small tables of every column kind, made here (no network, no hub)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from synthgen import Synthesizer

# The test models are tiny and the suite shares 2 cores with the servers and workers it starts:
# spinning OpenMP threads would only fight each other (see synthgen/threads.py). The variable
# reaches Synthesizer.fit (whose default is the free cores) and the processes tests start.
torch.set_num_threads(1)
os.environ.setdefault("SYNTHGEN_TRAIN_THREADS", "1")

# UCI Adult's training file (CC BY 4.0, https://archive.ics.uci.edu/dataset/2/adult: 32,561
# rows; gzipped, with a header row), shipped with the tests: no download, no path outside the
# repository, so no test skips for want of it.
ADULT = Path(__file__).resolve().parent / "data" / "adult.data.gz"


def make_people(n: int = 500, seed: int = 0) -> pd.DataFrame:
    """A mixed table with every kind, missing values in each, and a dependency between columns."""
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 90, n)
    income = np.round(np.exp(rng.normal(10, 0.6, n)) + age * 50, 2)
    city = rng.choice(["Lyon", "Paris", "Nice", "Lille"], n, p=[0.4, 0.3, 0.2, 0.1]).astype(object)
    member = rng.random(n) < 0.3
    joined = pd.Timestamp("2015-01-01") + pd.to_timedelta(rng.integers(0, 3000, n), unit="D")
    df = pd.DataFrame({
        "age": age,
        "income": income,
        "city": city,
        "member": member,
        "joined": joined,
        "children": rng.poisson(1.2, n).astype(float),
    })
    df.loc[rng.random(n) < 0.05, "income"] = np.nan
    df.loc[rng.random(n) < 0.05, "city"] = None
    df.loc[rng.random(n) < 0.05, "children"] = np.nan
    return df


@pytest.fixture
def people() -> pd.DataFrame:
    return make_people()


@pytest.fixture(scope="session")
def adult() -> pd.DataFrame:
    return pd.read_csv(ADULT, skipinitialspace=True, na_values=["?"])


@pytest.fixture(scope="session")
def adult_model(adult: pd.DataFrame) -> Synthesizer:
    """A small DP model of Adult (a few epochs), shared by the conditioned-sampling tests: what
    they check is that conditioned output follows this model, however good it is. They only
    sample from it."""
    return Synthesizer(epsilon=3.0, epochs=4, seed=0, device="cpu").fit(adult)


# Skips that a machine set up as the README says may still show: no CUDA device, no PostgreSQL
# server on 127.0.0.1:5432 (the SQLite runs of the same tests cover the logic). Not MariaDB's:
# tests/mysql_server.py starts its own server from binaries .ci/run installs, so a skip there
# means CI lacks what it should have, and fails. Azurite's (abfs:// through adlfs) is allowed: not
# in the dev extra (tests/test_sources_object_stores.py says why), run by hand.
ALLOWED_SKIPS = ("CUDA", "PostgreSQL", "Azurite")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """With ``SYNTHGEN_NO_SKIP=1`` (``.ci/run`` sets it), any other skip is a failure: a test
    that needs what CI installs (Chromium, redis-server, the dev extra) never skips unseen."""
    outcome = yield
    report = outcome.get_result()
    if (os.environ.get("SYNTHGEN_NO_SKIP") == "1" and report.skipped
            and not hasattr(report, "wasxfail")
            and not any(word in str(report.longrepr) for word in ALLOWED_SKIPS)):
        report.outcome = "failed"
        report.longrepr = (f"skipped, but SYNTHGEN_NO_SKIP=1 (what .ci/run installs should be "
                           f"here): {report.longrepr}")
