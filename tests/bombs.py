"""Tables that are small on disk and huge once decoded (shared by the library and API tests)."""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.parquet as pq


def parquet_bomb(rows: int, row_group: int = 1_000_000, columns: int = 2) -> bytes:
    """A zstd Parquet file of ``rows`` zeros per column: under 1 MB for 100 M rows."""
    block = pa.array([0] * min(rows, row_group), pa.int64())
    table = pa.table({f"c{i}": block for i in range(columns)})
    out = io.BytesIO()
    with pq.ParquetWriter(out, table.schema, compression="zstd") as writer:
        for start in range(0, rows, row_group):
            writer.write_table(table.slice(0, min(row_group, rows - start)))
    return out.getvalue()


def string_bomb(rows: int, length: int) -> bytes:
    """A zstd Parquet file whose one text column repeats a ``length``-character string in
    ``rows`` rows, dictionary-encoded and without Arrow's schema (so it reads back as plain
    strings): 390 bytes for 65,536 rows of 40 kB, 2.6 GB once decoded. Written from a
    dictionary array: the text is never expanded here either."""
    import numpy as np

    column = pa.DictionaryArray.from_arrays(pa.array(np.zeros(rows, np.int32)),
                                            pa.array(["x" * length]))
    out = io.BytesIO()
    pq.write_table(pa.table({"s": column}), out, compression="zstd", store_schema=False,
                   row_group_size=rows)
    return out.getvalue()
