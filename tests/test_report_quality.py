"""synthgen's quality scores are SDMetrics' QualityReport scores, without importing sdmetrics
in the runtime path (it imports the BSL-licensed copulas package)."""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest
from conftest import make_people

from synthgen.evaluate import evaluation_kinds, quality_report


def with_links(df: pd.DataFrame, seed: int, strength: float) -> pd.DataFrame:
    """Add a numerical and a categorical column tied to others (pairs SDMetrics counts)."""
    rng = np.random.default_rng(seed)
    out = df.copy()
    noise = rng.normal(0, df["income"].std(), len(df))
    out["spend"] = strength * df["income"] + (1 - strength) * noise
    band = np.where(df["age"] < 40, "young", np.where(df["age"] < 65, "middle", "old"))
    shuffled = rng.permutation(band)
    out["band"] = np.where(rng.random(len(df)) < strength, band, shuffled)
    return out


def drifted(n: int, seed: int) -> pd.DataFrame:
    """Another sample of the same kind of table, with shifted marginals and weaker pairs."""
    df = make_people(n, seed)
    rng = np.random.default_rng(seed)
    df["age"] = df["age"] + rng.integers(0, 15, n)
    df.loc[rng.random(n) < 0.2, "city"] = "Nice"
    return with_links(df, seed, 0.5)


def test_scores_match_sdmetrics_quality_report() -> None:
    sdmetrics = pytest.importorskip("sdmetrics")
    assert sdmetrics.__version__.startswith("0.32")  # the definitions followed
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from sdmetrics.reports.single_table import QualityReport

    real, synthetic = with_links(make_people(600, 0), 0, 0.9), drifted(700, 1)
    kinds = evaluation_kinds(real)
    ours = quality_report(real, synthetic, kinds)
    sdtypes = {**kinds, "member": "boolean"}
    report = QualityReport()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report.generate(real, synthetic, {"columns": {c: {"sdtype": t} for c, t in
                                                      sdtypes.items()}}, verbose=False)

    shapes = report.get_details("Column Shapes").set_index("Column")["Score"]
    for col in ours["columns"]:
        assert col["score"] == pytest.approx(shapes[col["column"]], abs=1e-9), col["column"]
    pairs = report.get_details("Column Pair Trends")
    by_pair = {(p["column_1"], p["column_2"]): p for p in ours["pairs"]}
    assert len(by_pair) == len(pairs)
    counted = set()
    for row in pairs.itertuples(index=False):
        mine = by_pair[(row[0], row[1])]
        assert mine["counted"] == bool(row[-1]), (row[0], row[1])
        if mine["counted"]:
            counted.add(mine["metric"])
            assert mine["score"] == pytest.approx(row.Score, abs=1e-9), (row[0], row[1])
    # Both metrics were compared, not just the pairs SDMetrics leaves out.
    assert counted == {"CorrelationSimilarity", "ContingencySimilarity"}
    assert ours["score"] == pytest.approx(report.get_score(), abs=1e-9)
    assert ours["score"] < 0.95  # the drift shows


def test_quality_lists_the_worst_columns_with_plot_data() -> None:
    real, synthetic = with_links(make_people(600, 0), 0, 0.9), drifted(600, 1)
    q = quality_report(real, synthetic, evaluation_kinds(real))
    worst = q["worst_columns"]
    scores = {c["column"]: c["score"] for c in q["columns"]}
    assert worst == sorted(scores, key=scores.__getitem__)[: len(worst)]
    assert "age" in worst  # shifted by up to 15 years
    dist = {d["column"]: d for d in q["distributions"]}
    assert set(dist) == set(worst)
    age = dist["age"]
    assert len(age["edges"]) == len(age["real"]) + 1
    assert sum(age["real"]) == pytest.approx(1.0) and sum(age["synthetic"]) == pytest.approx(1.0)
    if "city" in dist:
        city = dist["city"]
        assert "(missing)" in city["labels"]
        assert sum(city["synthetic"]) == pytest.approx(1.0)


def test_the_library_does_not_import_bsl_code() -> None:
    code = (
        "import sys, pandas as pd\n"
        "from synthgen.evaluate import evaluate\n"
        "import synthgen.report, synthgen.report_html\n"
        "df = pd.DataFrame({'a': [1, 2, 3] * 20, 'b': ['x', 'y', 'z'] * 20})\n"
        "evaluate(df, df, holdout=df, target='b')\n"
        "bad = sorted({m.split('.')[0] for m in sys.modules} & "
        "{'sdv', 'ctgan', 'rdt', 'copulas', 'sdmetrics'})\n"
        "print(bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
