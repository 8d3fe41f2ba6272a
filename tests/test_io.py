"""Bad input gets a clear error or a documented fallback; output CSVs are safe to open."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from synthgen import Synthesizer
from synthgen.errors import InputError
from synthgen.io import MIN_ROWS, escape_formulas, read_table, write_csv


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"", "empty-table"),
        (b"   \n", "empty-table"),
        (b"a,b,c\n", "empty-table"),
        (b"a,b\n1,2\n", "too-few-rows"),
        ("name,city\n".encode("utf-16") + "Jose,Paris\n".encode("utf-16-le") * 30,
         "bad-encoding"),
        (b'a,b\n1,2\n3,"4\n5,6,7,8\n', "malformed-csv"),
    ],
    ids=["empty", "blank", "header-only", "one-row", "utf-16", "unclosed-quote"],
)
def test_bad_csv_gets_a_clear_error(tmp_path: Path, data: bytes, code: str) -> None:
    with pytest.raises(InputError) as info:
        read_table(_write(tmp_path, "t.csv", data))
    assert info.value.code == code
    assert str(info.value)  # a sentence, not a traceback


@pytest.mark.parametrize(("name", "data", "named"), [
    ("people.xlsx", b"PK\x03\x04" + bytes(60), "zip archive"),
    ("people.xls", b"\xd0\xcf\x11\xe0" + bytes(60), "Excel 97-2003"),
    ("people.json", b'[{"a": 1, "b": 2}]', "JSON"),
    ("people.csv", b'\n  {"a": 1}\n{"a": 2}\n', "JSON"),
])
def test_other_formats_are_named_and_the_supported_ones_listed(
        tmp_path: Path, name: str, data: bytes, named: str) -> None:
    with pytest.raises(InputError) as info:
        read_table(_write(tmp_path, name, data))
    assert info.value.code == "unsupported-format"
    assert named in str(info.value) and "CSV" in str(info.value) and "Parquet" in str(info.value)


def test_a_csv_whose_header_starts_with_a_bracket_is_still_a_csv(tmp_path: Path) -> None:
    rows = "".join(f"{i},{i % 3}\n" for i in range(30))
    assert len(read_table(_write(tmp_path, "t.csv", ("[id],group\n" + rows).encode()))) == 30


def test_ragged_rows_are_rejected_with_the_line(tmp_path: Path) -> None:
    body = b"a,b\n" + b"1,2\n" * 30 + b"1,2,3,4\n"
    with pytest.raises(InputError) as info:
        read_table(_write(tmp_path, "t.csv", body))
    assert info.value.code == "malformed-csv" and "line" in str(info.value)


def test_oversized_file_is_refused_before_reading(tmp_path: Path) -> None:
    path = _write(tmp_path, "t.csv", b"a\n" + b"1\n" * 100)
    with pytest.raises(InputError) as info:
        read_table(path, max_bytes=50)
    assert info.value.code == "too-large"


def test_utf8_with_bom_and_parquet_are_read(tmp_path: Path) -> None:
    df = read_table(_write(tmp_path, "t.csv", "\ufeffx,y\n".encode() + b"1,a\n" * MIN_ROWS))
    assert list(df.columns) == ["x", "y"]
    pq = tmp_path / "t.parquet"
    pd.DataFrame({"x": range(MIN_ROWS)}).to_parquet(pq)
    assert len(read_table(pq)) == MIN_ROWS


def test_formula_cells_are_escaped_and_numbers_are_not() -> None:
    df = pd.DataFrame(
        {"t": ["=1+1", "+cmd", "-x", "@SUM(A1)", "ok", None], "n": [-1, 2, 3, 4, 5, 6]}
    )
    out = io.StringIO()
    write_csv(df, out)
    text = out.getvalue()
    for cell in ("'=1+1", "'+cmd", "'-x", "'@SUM(A1)"):
        assert cell in text
    assert "\n=1+1" not in text and ",-1\n" in text
    assert escape_formulas(df)["n"].tolist() == df["n"].tolist()


def test_awkward_columns_fit_with_documented_fallbacks() -> None:
    rng = np.random.default_rng(0)
    n = 3000
    df = pd.DataFrame({
        "all_null": [np.nan] * n,
        "every_value_distinct": [f"v{i}" for i in range(n)],
        "mixed": rng.choice(["a", "b", "c", "7"], n).tolist(),
        "huge_cardinality": [f"c{i}" for i in rng.integers(0, 10_000, n)],
        "x": rng.normal(size=n),
    })
    df.loc[:10, "mixed"] = 5  # mixed types in one column
    synth = Synthesizer(epsilon=1.0, epochs=4, seed=0).fit(df)
    out = synth.sample(200)
    assert list(out.columns) == list(df.columns)
    assert out["all_null"].isna().mean() > 0.8  # the DP histogram only sees nulls
    notes = {c["name"]: c for c in synth.report()["columns"]}
    assert notes["every_value_distinct"]["source"] == "dropped"
    assert notes["huge_cardinality"]["source"] == "dropped"
    assert out["every_value_distinct"].isna().all()  # dropped columns keep their place, empty
    # a column of mixed types takes the kind most of its values have (a DP count decides)
    assert notes["mixed"]["kind"] == "categorical"
    mixed = next(d for d in synth.domains if d.name == "mixed")
    assert {"a", "b", "c", "7"} <= set(mixed.categories)
