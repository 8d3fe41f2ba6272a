"""A messy table's synthetic columns keep their input's look (formats, codes, nulls)."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from test_formats import _messy

from synthgen.io import write_csv


@pytest.mark.slow
def test_a_messy_table_comes_out_in_its_own_formats() -> None:
    from synthgen import Synthesizer

    df = _messy(2000)
    synth = Synthesizer(epsilon=1.0, epochs=3, seed=0).fit(df)
    out = synth.sample(2000)
    checks = {"ordered": r"\d{2}/\d{2}/\d{4}", "balance": r"-?\$\d{1,3}(,\d{3})*\.\d{2}",
              "zip": r"\d{5}", "score": None}
    for column, pattern in checks.items():
        cells = out[column].dropna()
        assert len(cells) > 0.5 * len(out), column
        if pattern:
            assert cells.astype(str).str.fullmatch(pattern).mean() == 1.0, column
    assert set(out["zip"].dropna()) <= set(df["zip"].dropna())
    score = out["score"].dropna().to_numpy(dtype=float)
    assert np.allclose(score, np.round(score, 1))
    # and a CSV writes each with its one decimal (6.0, not 6)
    buffer = io.StringIO()
    write_csv(out, buffer)
    written = pd.read_csv(io.StringIO(buffer.getvalue()), dtype=str)["score"].dropna()
    assert written.str.fullmatch(r"-?\d+\.\d").all()
    # the flag's missing quarter stays missing
    assert abs(out["active"].isna().mean() - df["active"].isna().mean()) < 0.06
