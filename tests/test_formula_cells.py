"""The upload check for formula-injection cells sees text in every pandas form."""

from __future__ import annotations

import pandas as pd
import pytest

from synthgen.service.tables import find_formula_cells


@pytest.mark.parametrize("dtype", [object, "category", "string"])
def test_formula_cells_are_found_whatever_the_text_dtype(dtype: object) -> None:
    df = pd.DataFrame({"safe": ["a", "b", "c"], "bad": ["x", "=HYPERLINK(1)", None],
                       "n": [1, 2, 3]})
    df["safe"] = df["safe"].astype(dtype)  # type: ignore[call-overload]
    df["bad"] = df["bad"].astype(dtype)  # type: ignore[call-overload]
    assert find_formula_cells(df) == ["bad"]
