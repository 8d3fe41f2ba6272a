"""Shared fixtures: small tables of every column kind, made here (no network, no hub)."""

from __future__ import annotations

import json
import os
import resource
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from synthgen import Synthesizer
from synthgen.models.trainer import TRAINING_ENV

# The test models are tiny and the suite shares 2 cores with the servers and workers it starts:
# spinning OpenMP threads would only fight each other (see synthgen/threads.py). The variable
# reaches Synthesizer.fit (whose default is the free cores) and the processes tests start.
torch.set_num_threads(1)
os.environ.setdefault("SYNTHGEN_TRAIN_THREADS", "1")
# The generator's warm-up on the DP marginal tables (300 generator-only steps by default) is
# most of a small test fit's time (the README sample at epsilon 1, 1 epoch: 5.6 of 6.8 s CPU; its
# DP-SGD 0.3 s). It is post-processing (it reads no row, spends nothing): the tests, like the
# service tests (tests/service/svc_helpers.py) and the README test, run 20 steps of it through
# the documented override. Tests that check what the warm-up learns ask for the default with
# the ``full_warmup`` fixture. Fits given a ``config=`` are not affected.
QUICK_TRAINING = json.dumps({"table_warmup_steps": 20})
os.environ.setdefault(TRAINING_ENV, QUICK_TRAINING)

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
def full_warmup(monkeypatch: pytest.MonkeyPatch) -> None:
    """The default warm-up (300 steps), for a test that checks what it learns."""
    monkeypatch.delenv(TRAINING_ENV, raising=False)


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


# Each test's CPU seconds (this process and the children it waited for: setup, call and teardown,
# so a session fixture's fit counts in the first test that uses it), the slowest printed at the
# end. Wall time (pytest's --durations) measures the neighbours on a shared machine; CPU time is
# what a test costs CI's two cores. Processes a test starts and leaves running (a service's
# server, its training subprocesses) count only when waited for.
CPU_TOP = 25
_cpu: list[tuple[float, str]] = []


def _cpu_seconds() -> float:
    own, children = (resource.getrusage(who) for who in
                     (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Any:
    start = _cpu_seconds()
    yield
    _cpu.append((_cpu_seconds() - start, item.nodeid))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _cpu:
        return
    total = sum(seconds for seconds, _ in _cpu)
    terminalreporter.write_sep("=", f"CPU seconds per test (top {CPU_TOP} of {len(_cpu)}, "
                                    f"{total:.0f} s in all, this process and waited children)")
    for seconds, nodeid in sorted(_cpu, reverse=True)[:CPU_TOP]:
        terminalreporter.write_line(f"{seconds:8.1f}  {nodeid}")
    if path := os.environ.get("SYNTHGEN_TEST_CPU"):  # every test's figure, to compare runs
        Path(path).write_text("".join(f"{seconds:.2f}\t{nodeid}\n" for seconds, nodeid in _cpu))
