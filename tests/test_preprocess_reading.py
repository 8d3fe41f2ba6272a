"""Large CSVs are read in chunks: same column types as one read of the file, text columns as
categoricals, bounded memory, and the bad-input errors still point at the right place."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from synthgen.errors import InputError
from synthgen.io import read_csv_bytes, read_table, write_csv

ROWS = 5000  # read in blocks of 4 KiB: about 60 of them


def _awkward_csv(path: Path) -> None:
    rng = np.random.default_rng(0)
    late = np.arange(ROWS) >= 4200  # only the last chunk differs
    df = pd.DataFrame({
        "n": rng.integers(0, 100, ROWS),
        "f": np.where(rng.random(ROWS) < 0.1, np.nan, rng.normal(size=ROWS)),
        "int_then_float": np.where(late, 0.5, 1.0),
        "city": np.where(rng.random(ROWS) < 0.1, None, rng.choice(["Lyon", "Nice"], ROWS)),
        "num_then_text": np.where(late, "n/a-text", "7").astype(object),
        "flag": rng.random(ROWS) < 0.5,
        "flag_missing": np.where(late, None, rng.random(ROWS) < 0.5).astype(object),
        "empty": np.full(ROWS, np.nan),
        "text_late": np.where(late, "x", None),
        "bool_then_text": np.where(late, "maybe", "True").astype(object),
    })
    df.to_csv(path, index=False)


def test_chunked_read_types_columns_as_one_read_of_the_file(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    _awkward_csv(path)
    whole = pd.read_csv(path, low_memory=False)
    got = read_table(path, chunk_bytes=4096)
    assert list(got.columns) == list(whole.columns) and len(got) == len(whole)
    for name in whole.columns:
        if isinstance(got[name].dtype, pd.CategoricalDtype):
            assert whole[name].dtype == object, name
            as_object = got[name].astype(object)
            assert as_object.isna().equals(whole[name].isna()), name
            assert (as_object.dropna() == whole[name].dropna()).all(), name
        else:
            pd.testing.assert_series_equal(got[name], whole[name], check_names=False)
    # text (also when it only appears in a later chunk) is compact; numbers stay numbers
    for name in ("city", "num_then_text", "text_late", "bool_then_text"):
        assert isinstance(got[name].dtype, pd.CategoricalDtype), name
    assert got["int_then_float"].dtype == np.float64 and got["n"].dtype == np.int64
    # the CSV written back has the same text as one written from a plain read
    assert write_csv(got, tmp_path / "a.csv") == write_csv(whole, tmp_path / "b.csv") == ROWS
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()


def test_bytes_and_file_reads_agree(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    _awkward_csv(path)
    from_file = read_table(path, chunk_bytes=4096)
    from_bytes = read_csv_bytes(path.read_bytes(), chunk_bytes=4096, categorical_text=True)
    pd.testing.assert_frame_equal(from_file, from_bytes)
    # by default the bytes reader (the service's) gives text as object columns, which its
    # formula-cell check looks at
    as_objects = read_csv_bytes(path.read_bytes(), chunk_bytes=4096)
    assert as_objects["city"].dtype == object
    pd.testing.assert_series_equal(as_objects["city"], from_file["city"].astype(object))


def test_bad_bytes_in_a_late_chunk_are_reported_at_their_offset(tmp_path: Path) -> None:
    body = b"name,city\n" + b"Jose,Paris\n" * 3000
    offset = len(body) + 3
    path = tmp_path / "t.csv"
    path.write_bytes(body + b"Jos\xe9,Paris\n" + b"Jose,Paris\n" * 100)
    with pytest.raises(InputError) as info:
        read_table(path, chunk_bytes=4096, encoding="utf-8")
    assert info.value.code == "bad-encoding"
    assert f"byte 0xe9 at offset {offset}" in str(info.value)
    # not given: read as Windows-1252, and the warning names the same byte
    df = read_table(path, chunk_bytes=4096)
    assert df["name"].iloc[3000] == "José" and df.attrs["csv"]["encoding"] == "cp1252"
    assert f"byte 0xe9 at offset {offset}" in df.attrs["warnings"][0]


@pytest.mark.parametrize("at", range(1018, 1030))  # around the first block boundary (4 KiB)
def test_a_ragged_row_anywhere_names_its_line(tmp_path: Path, at: int) -> None:
    path = tmp_path / "t.csv"
    path.write_bytes(b"a,b\n" + b"1,x\n" * at + b"1,2,3\n" + b"1,x\n" * 2000)
    with pytest.raises(InputError) as info:
        read_table(path, chunk_bytes=4096)
    assert info.value.code == "malformed-csv" and f"line {at + 2}" in str(info.value)


def test_quoted_line_breaks_and_quotes_across_blocks(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    notes = rng.choice(["plain", 'say "hi"\nthen, go', "a\n\nb", ""], ROWS)
    df = pd.DataFrame({"k": np.arange(ROWS), "note": notes, "v": rng.normal(size=ROWS)})
    path = tmp_path / "q.csv"
    df.to_csv(path, index=False)
    got = read_table(path, chunk_bytes=4096)
    whole = pd.read_csv(path, low_memory=False)
    assert got["note"].astype(object).fillna("").tolist() == whole["note"].fillna("").tolist()
    pd.testing.assert_series_equal(got["v"], whole["v"])
    assert got["k"].tolist() == list(range(ROWS))


def test_reading_keeps_text_compact(tmp_path: Path, adult: pd.DataFrame) -> None:
    """Peak Python-heap memory of the chunked read is a fraction of a plain read's (whose text
    cells are one Python string each), and the table it returns is smaller still."""
    path = tmp_path / "adult.csv"
    pd.concat([adult] * 3, ignore_index=True).to_csv(path, index=False)
    size = path.stat().st_size

    def peak(read: object) -> tuple[int, pd.DataFrame]:
        tracemalloc.start()
        try:
            df = read()  # type: ignore[operator]
            return tracemalloc.get_traced_memory()[1], df
        finally:
            tracemalloc.stop()

    plain_peak, plain = peak(lambda: pd.read_csv(path, low_memory=False))
    chunked_peak, chunked = peak(lambda: read_table(path, chunk_bytes=size // 32))
    assert chunked_peak < 0.35 * plain_peak
    assert chunked.memory_usage(deep=True).sum() < 0.2 * plain.memory_usage(deep=True).sum()
