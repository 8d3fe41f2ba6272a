"""Reading limits: a table is refused once it would decode past them, before it is in memory."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from bombs import parquet_bomb, string_bomb

from synthgen.io import ReadLimits, TableTooLarge, read_csv_bytes, read_parquet_bytes, read_table


def test_parquet_footer_over_the_row_limit_is_refused_before_decoding() -> None:
    raw = parquet_bomb(100_000_000)
    assert len(raw) < 1_000_000
    before = pa.total_allocated_bytes()
    with pytest.raises(TableTooLarge) as info:
        read_parquet_bytes(raw, "bomb.parquet", limits=ReadLimits(max_rows=20_000_000))
    assert info.value.code == "too-large" and "100,000,000 rows" in str(info.value)
    assert pa.total_allocated_bytes() - before < 1_000_000


def test_parquet_decoded_size_is_capped_while_decoding() -> None:
    # The footer's uncompressed size counts encoded (run-length) pages: a few KB for 5 M zeros,
    # 40 MB once decoded. The reader's floor of 8 bytes a cell refuses it before decoding
    # (text that a footer cannot size is counted while decoding: see the string bomb below).
    raw = parquet_bomb(5_000_000, columns=1)
    assert pq.ParquetFile(pa.BufferReader(raw)).metadata.row_group(0).total_byte_size < 10**6
    with pytest.raises(TableTooLarge, match="decodes to"):
        read_parquet_bytes(raw, "t.parquet", limits=ReadLimits(max_bytes=4_000_000))
    assert len(read_parquet_bytes(raw, "t.parquet", limits=ReadLimits(max_bytes=10**8))) == (
        5_000_000)


def test_parquet_column_limit() -> None:
    raw = parquet_bomb(100, columns=30)
    with pytest.raises(TableTooLarge, match="30 columns"):
        read_parquet_bytes(raw, "t.parquet", limits=ReadLimits(max_columns=20))


def test_csv_rows_columns_and_cells_are_capped_while_reading(tmp_path: Path) -> None:
    wide = ("," * 99 + "\n").encode()  # 100 empty cells a row: 8 bytes each once parsed
    raw = b",".join(f"c{i}".encode() for i in range(100)) + b"\n" + wide * 5_000
    with pytest.raises(TableTooLarge, match="columns"):
        read_csv_bytes(raw, "t.csv", limits=ReadLimits(max_columns=50))
    with pytest.raises(TableTooLarge, match="rows"):
        read_csv_bytes(raw, "t.csv", chunk_bytes=4096, limits=ReadLimits(max_rows=1_000))
    with pytest.raises(TableTooLarge, match="decodes to"):
        read_csv_bytes(raw, "t.csv", limits=ReadLimits(max_bytes=1_000_000))
    assert read_csv_bytes(raw, "t.csv", limits=ReadLimits(5_000, 100, 4_000_000)).shape == (
        5_000, 100)
    path = tmp_path / "t.csv"
    path.write_bytes(raw)
    with pytest.raises(TableTooLarge):
        read_table(path, limits=ReadLimits(max_rows=10))


def test_parquet_string_dictionary_bomb_is_refused_without_expanding_the_text() -> None:
    # 390 bytes: one 40 kB string in 65,536 rows. The footer counts the dictionary page once
    # (40 kB); decoded as plain strings it is 2.6 GB. Read as a dictionary, the text is counted
    # from the indices and never expanded.
    raw = string_bomb(65_536, 40_000)
    assert len(raw) < 1_000
    before = pa.total_allocated_bytes()
    peak = pa.default_memory_pool().max_memory()
    with pytest.raises(TableTooLarge, match="decodes to 2,62"):
        read_parquet_bytes(raw, "bomb.parquet", limits=ReadLimits(max_bytes=2 * 1024**3))
    assert pa.total_allocated_bytes() - before < 10_000_000
    assert pa.default_memory_pool().max_memory() - peak < 10_000_000


def test_parquet_decoding_past_its_expansion_cap_is_refused() -> None:
    raw = string_bomb(65_536, 20_000)  # 389 bytes -> 1.3 GB, under a 2 GiB byte cap
    limits = ReadLimits(max_bytes=2 * 1024**3, max_expansion=1000)
    with pytest.raises(TableTooLarge, match="from a file of 389 bytes"):
        read_parquet_bytes(raw, "bomb.parquet", limits=limits)
    small = string_bomb(1_000, 20)  # 20 kB decoded: under the 64 MiB any file may reach
    table = read_parquet_bytes(small, "ok.parquet", limits=limits)
    assert table.shape == (1_000, 1) and table["s"].dtype == object
    assert set(table["s"]) == {"x" * 20}
