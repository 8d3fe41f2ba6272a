"""bench/realism.py's corpus is what issue 21 describes, and its checks can fail."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pandas as pd

BENCH = Path(__file__).resolve().parents[1] / "bench" / "realism.py"


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_realism", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_realism"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _as_written(df: pd.DataFrame, tmp_path: Path, realism: ModuleType) -> pd.DataFrame:
    path = tmp_path / "t.csv"
    df.to_csv(path, index=False)
    return realism._text(path)


def test_the_crm_export_is_the_issues(tmp_path: Path) -> None:
    realism = _bench()
    real = _as_written(realism.crm(0), tmp_path, realism)
    assert real.shape == (2000, 11)
    assert real["zip"].dropna().str.startswith("0").any()  # leading zeros, kept as written
    assert real["balance"].dropna().str.fullmatch(r"\$\d{1,3}(,\d{3})*\.\d{2}").all()
    assert real["last_order"].dropna().str.fullmatch(r"\d{2}/\d{2}/\d{4}").all()
    assert abs(real["is_active"].isna().mean() - 0.25) < 0.03
    missing = real.drop(columns="customer_id").isna().mean()
    assert missing.between(0.03, 0.33).all(), missing
    assert real["segment"].nunique() == 4
    assert real["score"].dropna().str.fullmatch(r"\d+\.\d").all()
    assert realism.dates(0, 500)["datetime"].str[:4].astype(int).between(2015, 2024).all()


def test_the_bars_pass_on_the_real_table_and_fail_on_a_broken_copy(tmp_path: Path) -> None:
    realism = _bench()
    real = _as_written(realism.crm(0), tmp_path, realism)
    assert all(ok for _, _, ok in realism.crm_bars(
        real, real, realism.check_columns("crm", "real", real, real)))
    broken = real.copy()
    broken["zip"] = broken["zip"].str.lstrip("0")  # the issue's integers without their zeros
    broken["balance"] = broken["balance"].str.replace(r"[$,]", "", regex=True)
    broken["is_active"] = broken["is_active"].fillna("False")  # the missing quarter as False
    broken = broken.drop(columns=["score"])
    bars = {bar: ok for bar, _, ok in realism.crm_bars(
        real, broken, realism.check_columns("crm", "broken", real, broken))}
    assert not bars["ZIP codes all 5-digit and among the real values"]
    assert not bars[">= 99 % of dates and amounts in the input's format"]
    assert not bars["null share within 0.06 of the real one"]
    assert not bars["every learnable column kept"]
    assert bars["segment TVD <= 0.1"] and bars["median amount within 0.7-1.4x"]  # values kept
