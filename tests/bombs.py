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
