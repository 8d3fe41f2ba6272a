"""Sampling speed of a fitted synthgen model, and the memory of streaming a large CSV.

Fits a small model quickly (epsilon=1, one epoch, on a sample of UCI Adult, or on an Adult-like
synthetic table when the file is absent; the model's quality does not matter here), then
measures:

- ``encoded_rows_per_s``: the generator alone (``generate_slots``: conditions, noise,
  forward, a Gumbel-max slot per one-hot span), the ceiling for the next two;
  ``decode_only_rows_per_s``: the encoder's ``decode`` alone, on two of those blocks;
- ``rows_per_s``: ``Synthesizer.sample_chunks``, i.e. the same plus decoding each chunk to a
  DataFrame;
- ``csv_rows_per_s``: ``synthgen.io.write_csv`` streaming ``--rows`` rows (1M by default) from
  ``sample_chunks`` to a file, with the resident memory sampled after every chunk: it must stay
  bounded by a few chunks, far below the whole table as one DataFrame.

    python bench/sampling_speed.py --rows 1000000 --json

The last line with --json is a JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout

import synthgen  # noqa: E402
from synthgen.io import write_csv  # noqa: E402
from synthgen.models.sampling import default_chunk, generate_slots  # noqa: E402

ADULT = ROOT.parent / "shared" / "data" / "adult" / "adult.data"


def adult_like(n: int, seed: int = 0) -> pd.DataFrame:
    """A stand-in with Adult's shape (6 numeric, 9 categorical columns) when the file is absent."""
    rng = np.random.default_rng(seed)

    def cat(prefix: str, k: int) -> np.ndarray:
        p = rng.dirichlet(np.ones(k))
        return rng.choice([f"{prefix}{i}" for i in range(k)], n, p=p).astype(object)

    return pd.DataFrame({
        "age": rng.integers(17, 90, n),
        "workclass": cat("w", 8),
        "fnlwgt": rng.integers(12_000, 1_500_000, n),
        "education": cat("e", 16),
        "education-num": rng.integers(1, 17, n),
        "marital-status": cat("m", 7),
        "occupation": cat("o", 14),
        "relationship": cat("r", 6),
        "race": cat("a", 5),
        "sex": cat("s", 2),
        "capital-gain": np.where(rng.random(n) < 0.9, 0, rng.integers(1, 99_999, n)),
        "capital-loss": np.where(rng.random(n) < 0.95, 0, rng.integers(1, 4_356, n)),
        "hours-per-week": rng.integers(1, 99, n),
        "native-country": cat("c", 41),
        "Y": cat("y", 2),
    })


def load_table(path: Path, rows: int, seed: int) -> tuple[pd.DataFrame, str]:
    if path.exists():
        df = pd.read_csv(path, skipinitialspace=True, na_values=["?"])
        return df.sample(min(rows, len(df)), random_state=seed).reset_index(drop=True), str(path)
    return adult_like(rows, seed), "synthetic Adult-like table"


def current_rss_mb() -> float:
    """Resident memory now (Linux /proc); falls back to the peak where /proc is missing."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return peak_rss_mb()


def peak_rss_mb() -> float:
    scale = 1 / 1024 if sys.platform != "darwin" else 1 / 2**20  # KiB on Linux, bytes on macOS
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


class MemoryProbe:
    """Passes chunks through, noting the resident memory and each chunk's in-memory size."""

    def __init__(self, chunks: Iterable[pd.DataFrame]) -> None:
        self.chunks = chunks
        self.start_mb = current_rss_mb()
        self.max_mb = self.start_mb
        self.rows = 0
        self.frame_bytes = 0

    def __iter__(self) -> Iterator[pd.DataFrame]:
        for chunk in self.chunks:
            self.rows += len(chunk)
            self.frame_bytes += int(chunk.memory_usage(deep=True).sum())
            self.max_mb = max(self.max_mb, current_rss_mb())
            yield chunk
        self.max_mb = max(self.max_mb, current_rss_mb())


def rate(rows: int, seconds: float) -> float:
    return rows / seconds if seconds > 0 else float("inf")


def main(argv: list[str] | None = None) -> dict[str, object]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ADULT, help="CSV to fit on (Adult by default)")
    ap.add_argument("--fit-rows", type=int, default=5_000)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    ap.add_argument("--sample-rows", type=int, default=None,
                    help="rows for the generator-only and sample_chunks measurements "
                         "(default: 10,000,000 on cuda, 200,000 on cpu)")
    ap.add_argument("--rows", type=int, default=1_000_000, help="rows streamed to the CSV")
    ap.add_argument("--chunk", type=int, default=None,
                    help="rows per chunk (default: synthgen's, by device and width)")
    ap.add_argument("--out", type=Path, default=None,
                    help="CSV path (default: a temporary file, deleted afterwards)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true", help="print a JSON object as the last line")
    args = ap.parse_args(argv)

    df, source = load_table(args.data, args.fit_rows, args.seed)
    t0 = time.perf_counter()
    model = synthgen.Synthesizer(epsilon=1.0, epochs=1, seed=args.seed, device=args.device)
    model.fit(df)
    fit_s = time.perf_counter() - t0
    assert model.generator is not None and model.cond is not None
    on_cuda = model.cond.device.type == "cuda"
    args.chunk = args.chunk or default_chunk(model.cond.device, model.encoder.width)
    args.sample_rows = args.sample_rows or (10_000_000 if on_cuda else 200_000)

    # Warm-up: the first chunk pays for allocator growth and thread-pool start.
    for _ in model.sample_chunks(args.chunk, chunk=args.chunk, seed=args.seed):
        pass

    gen = torch.Generator(device=model.cond.device).manual_seed(args.seed)
    t0 = time.perf_counter()
    encoded = 0
    kept: list[tuple[np.ndarray, np.ndarray]] = []
    assert model.encoder is not None
    for block in generate_slots(model.generator, model.cond, args.sample_rows,
                                model.encoder.nullable, chunk=args.chunk, gen=gen):
        encoded += len(block[0])
        if len(kept) < 2:  # a couple of blocks to time decoding alone, memory stays small
            kept.append(block)
    encoded_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    decoded_only = sum(len(model.encoder.decode(*b)) for b in kept)
    decode_s = time.perf_counter() - t0
    del kept

    t0 = time.perf_counter()
    decoded = sum(len(c) for c in model.sample_chunks(args.sample_rows, chunk=args.chunk,
                                                      seed=args.seed))
    decoded_s = time.perf_counter() - t0

    with tempfile.TemporaryDirectory() as tmp:
        target = args.out or Path(tmp) / "synthetic.csv"
        probe = MemoryProbe(model.sample_chunks(args.rows, chunk=args.chunk, seed=args.seed))
        t0 = time.perf_counter()
        written = write_csv(probe, target)
        csv_s = time.perf_counter() - t0
        csv_mb = target.stat().st_size / 2**20

    growth_mb = probe.max_mb - probe.start_mb
    frame_mb = probe.frame_bytes / 2**20  # the whole output as DataFrames, had it been kept
    chunk_mb = frame_mb / max(1, -(-args.rows // args.chunk))
    result: dict[str, object] = {
        "rows_per_s": rate(decoded, decoded_s),
        "encoded_rows_per_s": rate(encoded, encoded_s),
        "decode_only_rows_per_s": rate(decoded_only, decode_s),
        "csv_rows_per_s": rate(written, csv_s),
        "csv_rows": written,
        "csv_mb": round(csv_mb, 1),
        "csv_s": round(csv_s, 2),
        "rss_start_mb": round(probe.start_mb, 1),
        "rss_max_while_streaming_mb": round(probe.max_mb, 1),
        "rss_growth_mb": round(growth_mb, 1),
        "whole_table_as_dataframes_mb": round(frame_mb, 1),
        "chunk_dataframe_mb": round(chunk_mb, 1),
        # Bounded: the growth is a few chunks' worth, not a share of the whole table.
        "memory_bounded": bool(growth_mb < max(0.5 * frame_mb, 8 * chunk_mb)),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "fit_s": round(fit_s, 2),
        "fit_rows": len(df),
        "fit_source": source,
        "encoded_width": model.encoder.width,
        "chunk": args.chunk,
        "device": str(model.info.get("device")),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }

    print(f"fit {len(df)} rows of {source} in {fit_s:.1f} s on {result['device']} "
          f"({result['threads']} threads); encoded width {result['encoded_width']}")
    print(f"{'what':<34}{'rows':>10}{'seconds':>10}{'rows/s':>12}")
    print(f"{'generator only (encoded)':<34}{encoded:>10,}{encoded_s:>10.2f}"
          f"{result['encoded_rows_per_s']:>12,.0f}")
    print(f"{'decoding only (encoder.decode)':<34}{decoded_only:>10,}{decode_s:>10.2f}"
          f"{result['decode_only_rows_per_s']:>12,.0f}")
    print(f"{'sample_chunks (decoded frames)':<34}{decoded:>10,}{decoded_s:>10.2f}"
          f"{result['rows_per_s']:>12,.0f}")
    print(f"{'write_csv streaming':<34}{written:>10,}{csv_s:>10.2f}"
          f"{result['csv_rows_per_s']:>12,.0f}")
    print(f"CSV {csv_mb:.0f} MB; resident memory {probe.start_mb:.0f} -> max "
          f"{probe.max_mb:.0f} MB while streaming (+{growth_mb:.0f} MB) against "
          f"{frame_mb:.0f} MB for the whole table as DataFrames; bounded: "
          f"{result['memory_bounded']}")
    if args.json:
        print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
