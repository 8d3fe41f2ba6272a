"""Training speed of the DP discriminator step: synthgen's fused step against Opacus 1.6.

All modes train the same CTGAN-sized discriminator (200 inputs = 160 data + 40 conditional
columns, hidden 256-256, LeakyReLU) on the same batch of B real + B fake rows, in the same
process, interleaved round by round so that a noisy shared machine slows them alike; speed is
reported as real rows per second of the median step, and compared as ratios.

- ``nonprivate``: one forward over [real; fake], mean BCE, backward, Adam (the floor).
- ``fused``: ours, ``synthgen.models.dpsgd.private_discriminator_step`` (real rows clipped,
  fake rows unclipped, noise, Adam).
- ``opacus``: the ``examples/dcgan.py`` pattern: ``GradSampleModule`` (hooks) +
  ``DPOptimizer``, D(real) and D(fake) in two forwards summed into one backward (per-sample
  gradients materialised, B x P floats).
- ``ghost``: Opacus ghost clipping (``GradSampleModuleFastGradientClipping``), one forward
  over [real; fake] (it refuses two forwards), every row clipped.
- ``full``: ours, a whole GAN iteration: generate B fakes, fused D step, one G step.

    python bench/train_speed.py --device cpu --batch 10000 --steps 5 --json

The last line with --json is a JSON object (rows_per_s, opacus_rows_per_s, ...).
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import resource
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

import opacus  # noqa: E402
from opacus import GradSampleModule  # noqa: E402
from opacus.grad_sample import GradSampleModuleFastGradientClipping  # noqa: E402
from opacus.optimizers import DPOptimizer, DPOptimizerFastGradientClipping  # noqa: E402
from opacus.utils.fast_gradient_clipping_utils import DPLossFastGradientClipping  # noqa: E402

from synthgen.models.dpsgd import private_discriminator_step  # noqa: E402
from synthgen.models.networks import Discriminator  # noqa: E402
from synthgen.models.trainer import GANTrainer, TrainingConfig, TrainingProgress  # noqa: E402
from synthgen.privacy.domains import ColumnDomain  # noqa: E402
from synthgen.schema import ColumnKind  # noqa: E402
from synthgen.transform import EncodedTable, TableEncoder  # noqa: E402

# Opacus's full backward hooks warn when the input rows do not require grad (they never do here).
warnings.filterwarnings("ignore", message="Full backward hook is firing")

MODES = ("nonprivate", "fused", "opacus", "ghost", "full", "full_nonprivate")
STEP_MODES = MODES[:4]
DATA_COLUMNS = 160
COND_COLUMNS = 40
NOISE_DIM = 64
NOISE_MULTIPLIER = 1.0
MAX_GRAD_NORM = 1.0
LR = 1e-3

Step = Callable[[], None]


def adam(module: nn.Module) -> torch.optim.Adam:
    return torch.optim.Adam(module.parameters(), lr=LR, betas=(0.5, 0.9))


def make_steps(
    modes: list[str], base: Discriminator, real: torch.Tensor, fake: torch.Tensor,
    device: torch.device, seed: int,
) -> dict[str, Step]:
    """One closure per mode; each owns its own copy of the discriminator and optimiser."""
    b = real.shape[0]
    rows = torch.cat([real, fake])
    labels = torch.cat([torch.ones(b, device=device), torch.zeros(b, device=device)])
    steps: dict[str, Step] = {}

    if "nonprivate" in modes:
        d_np = copy.deepcopy(base)
        opt_np = adam(d_np)

        def nonprivate() -> None:
            loss = F.binary_cross_entropy_with_logits(d_np(rows), labels)
            opt_np.zero_grad(set_to_none=True)
            loss.backward()
            opt_np.step()

        steps["nonprivate"] = nonprivate

    if "fused" in modes:
        d_f = copy.deepcopy(base)
        opt_f = adam(d_f)
        gen_f = torch.Generator(device=device).manual_seed(seed)

        def fused() -> None:
            private_discriminator_step(
                d_f, opt_f, rows, b, noise_multiplier=NOISE_MULTIPLIER,
                max_grad_norm=MAX_GRAD_NORM, expected_batch_size=b, generator=gen_f,
            )

        steps["fused"] = fused

    if "opacus" in modes:
        # make_private's defaults (loss_reduction="mean" everywhere), without its DataLoader.
        d_o = GradSampleModule(copy.deepcopy(base), batch_first=True, loss_reduction="mean")
        opt_o = DPOptimizer(
            adam(d_o), noise_multiplier=NOISE_MULTIPLIER, max_grad_norm=MAX_GRAD_NORM,
            expected_batch_size=b, loss_reduction="mean",
            generator=torch.Generator(device=device).manual_seed(seed),
        )
        ones, zeros = labels[:b], labels[b:]

        def opacus_hooks() -> None:  # examples/dcgan.py, D step
            opt_o.zero_grad(set_to_none=True)
            err_real = F.binary_cross_entropy_with_logits(d_o(real), ones)
            err_fake = F.binary_cross_entropy_with_logits(d_o(fake.detach()), zeros)
            (err_real + err_fake).backward()
            opt_o.step()
            opt_o.zero_grad(set_to_none=True)  # frees the B x P grad_sample

        steps["opacus"] = opacus_hooks

    if "ghost" in modes:
        d_g = GradSampleModuleFastGradientClipping(
            copy.deepcopy(base), batch_first=True, loss_reduction="mean",
            max_grad_norm=MAX_GRAD_NORM, use_ghost_clipping=True,
        )
        opt_g = DPOptimizerFastGradientClipping(
            adam(d_g), noise_multiplier=NOISE_MULTIPLIER, max_grad_norm=MAX_GRAD_NORM,
            expected_batch_size=2 * b, loss_reduction="mean",
            generator=torch.Generator(device=device).manual_seed(seed),
        )
        criterion = DPLossFastGradientClipping(
            d_g, opt_g, nn.BCEWithLogitsLoss(reduction="mean"), loss_reduction="mean"
        )

        def ghost() -> None:
            opt_g.zero_grad(set_to_none=True)
            criterion(d_g(rows), labels).backward()
            opt_g.step()

        steps["ghost"] = ghost

    return steps


def bench_encoder(categorical_widths: tuple[int, ...] = (2, 2, 3, 5, 7, 9, 12),
                  numeric_columns: int = 12, bins: int = 9) -> TableEncoder:
    """A CTGAN-sized encoder: 12 numeric columns (9 bins + null + a scalar each) and 7
    categorical ones (the conditional vector, 40 columns): 212 discriminator inputs."""
    domains: list[ColumnDomain] = []
    for i in range(numeric_columns):
        edges = [float(2**k) for k in range(bins + 1)]
        domains.append(ColumnDomain(
            f"num{i}", ColumnKind.CONTINUOUS, "float64", "public",
            bins=list(zip(edges[:-1], edges[1:], strict=True)),
            frequencies=[1 / (bins + 1)] * (bins + 1)))
    for i, w in enumerate(categorical_widths):
        cats = [f"c{j}" for j in range(w - 1)]  # w slots: w - 1 values + null
        domains.append(ColumnDomain(f"cat{i}", ColumnKind.CATEGORICAL, "object", "public",
                                    categories=cats, frequencies=[1 / w] * w))
    return TableEncoder(domains)


def random_table(encoder: TableEncoder, rows: int, seed: int) -> EncodedTable:
    rng = np.random.default_rng(seed)
    widths = np.array([s.width for s in encoder.discrete_spans])
    slots = (rng.random((rows, widths.size)) * widths).astype(np.int32)
    scalars = rng.uniform(-1, 1, (rows, len(encoder.scalar_columns))).astype(np.float32)
    return EncodedTable(slots, scalars)


class NonPrivateTrainer(GANTrainer):
    """The same iteration with a plain discriminator step (no clipping, no noise): the floor
    a DP step is measured against."""

    def _discriminator_step(self, real: torch.Tensor, real_weight: torch.Tensor | None,
                            noise_multiplier: float, batch: int) -> torch.Tensor:
        real_cond = self.cond.from_rows(real, self._rng)
        with torch.no_grad():
            fake, _, fake_cond, _ = self._fake(batch)
        rows = torch.cat([torch.cat([real, real_cond], 1), torch.cat([fake, fake_cond], 1)])
        weight = torch.cat([real_weight if real_weight is not None
                            else real.new_ones(real.shape[0]), real.new_ones(batch)])
        labels = torch.cat([real.new_ones(real.shape[0]), real.new_zeros(batch)])
        terms = F.binary_cross_entropy_with_logits(self.discriminator(rows), labels,
                                                   reduction="none")
        loss = (terms * weight).sum() / weight.sum()
        self.opt_d.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_d.step()
        return loss.detach()


def time_trainer(
    trainer_cls: type[GANTrainer], batch: int, rows: int, steps: int, device: torch.device,
    seed: int, hidden: tuple[int, ...],
) -> tuple[float, dict[str, object]]:
    """Seconds per iteration of GANTrainer.train (Poisson sampling from a resident table,
    DP D step, G step, weight average; CUDA graphs on CUDA) over the steps after warm-up."""
    encoder = bench_encoder()
    config = TrainingConfig(batch_size=batch, d_hidden=hidden)  # the D-step modes' D
    trainer = trainer_cls(encoder, config, device, seed)
    warm = 6  # 3 eager steps, then capture and 3 replays
    marks: list[tuple[int, float]] = []

    def on_progress(p: TrainingProgress) -> None:  # reading the losses syncs the device
        marks.append((p.step, time.perf_counter()))

    trainer.train(random_table(encoder, rows, seed), noise_multiplier=NOISE_MULTIPLIER,
                  total_steps=warm + steps, sampling_rate=min(batch / rows, 1.0),
                  batch=batch, epsilon_at=lambda _s: 0.0,
                  on_progress=on_progress, progress_every=1)
    (s0, t0), (s1, t1) = marks[warm - 1], marks[-1]
    info = {"d_in": encoder.width + trainer.cond.width, "table_rows": rows,
            "cuda_graphs": trainer.uses_cuda_graphs}
    return (t1 - t0) / (s1 - s0), info


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(step: Step, device: torch.device) -> float:
    sync(device)
    t0 = time.perf_counter()
    step()
    sync(device)  # CUDA work is asynchronous: time it to completion
    return time.perf_counter() - t0


def peak_rss_mb() -> float:
    # ru_maxrss is in KiB on Linux, bytes on macOS.
    scale = 1 / 1024 if sys.platform != "darwin" else 1 / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def main(argv: list[str] | None = None) -> dict[str, object]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--batch", type=int, default=10_000, help="real rows per step (B)")
    ap.add_argument("--steps", type=int, default=5, help="timed steps per mode")
    ap.add_argument("--opacus-steps", type=int, default=None,
                    help="timed steps for the slow Opacus hooks mode (default: --steps)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed steps per mode first")
    ap.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    ap.add_argument("--hidden", type=int, nargs="+", default=[256, 256])
    ap.add_argument("--full-steps", type=int, default=None,
                    help="timed GANTrainer iterations (default: 50 on cuda, --steps on cpu)")
    ap.add_argument("--table-rows", type=int, default=None,
                    help="rows of the resident table the full modes Poisson-sample from "
                         "(default: 1,000,000 on cuda, 4 x batch on cpu)")
    ap.add_argument("--tf32", action="store_true",
                    help="allow TF32 matmuls on cuda (off by default: exact float32 clipping)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true", help="print a JSON object as the last line")
    args = ap.parse_args(argv)

    if args.device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: no CUDA device is available")
    device = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = bool(args.tf32)
    torch.manual_seed(args.seed)
    b = args.batch
    d_in = DATA_COLUMNS + COND_COLUMNS
    base = Discriminator(d_in, tuple(args.hidden), dropout=0.0).to(device)
    real = torch.rand(b, d_in, device=device)
    fake = torch.rand(b, d_in, device=device)
    steps = make_steps([m for m in args.modes if m in STEP_MODES], base, real, fake, device,
                       args.seed)
    wanted = dict.fromkeys(steps, args.steps)
    if "opacus" in wanted and args.opacus_steps is not None:
        wanted["opacus"] = args.opacus_steps

    for step in steps.values():
        for _ in range(args.warmup):
            timed(step, device)
    times: dict[str, list[float]] = {m: [] for m in steps}
    # Interleaved rounds: a burst of load from a neighbour slows every mode, not just one.
    for r in range(max(wanted.values())):
        for mode, step in steps.items():
            if r < wanted[mode]:
                times[mode].append(timed(step, device))

    median = {m: statistics.median(t) for m, t in times.items() if t}
    full_info: dict[str, object] = {}
    table_rows = args.table_rows or (1_000_000 if device.type == "cuda" else 4 * b)
    full_steps = args.full_steps or (50 if device.type == "cuda" else args.steps)
    trainers = {"full": GANTrainer, "full_nonprivate": NonPrivateTrainer}
    for mode in (m for m in args.modes if m in trainers):
        median[mode], full_info = time_trainer(trainers[mode], b, table_rows, full_steps,
                                               device, args.seed, tuple(args.hidden))
        times[mode] = [median[mode]] * full_steps
    rps = {m: b / s for m, s in median.items()}
    result: dict[str, object] = {
        "rows_per_s": rps.get("fused"),
        "opacus_rows_per_s": rps.get("opacus"),
        "ghost_rows_per_s": rps.get("ghost"),
        "nonprivate_rows_per_s": rps.get("nonprivate"),
        # the production path: GANTrainer's whole DP iteration, Poisson-sampled from a
        # resident table (expected batch B), with the generator step
        "full_iteration_rows_per_s": rps.get("full"),
        "full_nonprivate_rows_per_s": rps.get("full_nonprivate"),
        "full_vs_nonprivate": _ratio(rps.get("full"), rps.get("full_nonprivate")),
        "full_speedup_vs_opacus_d_step": _ratio(rps.get("full"), rps.get("opacus")),
        "full_modes": full_info,
        "tf32": bool(args.tf32),
        "speedup_vs_opacus": _ratio(rps.get("fused"), rps.get("opacus")),
        "speedup_vs_ghost": _ratio(rps.get("fused"), rps.get("ghost")),
        "slowdown_vs_nonprivate": _ratio(rps.get("nonprivate"), rps.get("fused")),
        "ms_per_step": {m: round(s * 1e3, 3) for m, s in median.items()},
        "steps": {m: len(t) for m, t in times.items()},
        "rows": "real rows per second (each step also sees B fake rows)",
        "device": str(device),
        "device_name": (torch.cuda.get_device_name(device) if device.type == "cuda"
                        else platform.processor() or platform.machine()),
        "threads": torch.get_num_threads(),
        "batch": b,
        "d_in": d_in,
        "hidden": args.hidden,
        "params": sum(p.numel() for p in base.parameters()),
        "noise_multiplier": NOISE_MULTIPLIER,
        "max_grad_norm": MAX_GRAD_NORM,
        "torch": torch.__version__,
        "opacus": opacus.__version__,
        "python": platform.python_version(),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }
    if device.type == "cuda":
        result["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)

    print(f"D step, B={b} real + {b} fake rows, d_in={d_in}, hidden={args.hidden}, "
          f"{device} ({result['device_name']}, {result['threads']} threads), "
          f"torch {torch.__version__}, opacus {opacus.__version__}")
    print(f"{'mode':<16}{'steps':>6}{'median ms':>12}{'min ms':>10}{'real rows/s':>14}"
          f"{'vs fused':>10}")
    for mode, t in times.items():
        if not t:
            continue
        rel = median[mode] / median["fused"] if "fused" in median else float("nan")
        print(f"{mode:<16}{len(t):>6}{median[mode] * 1e3:>12.1f}{min(t) * 1e3:>10.1f}"
              f"{rps[mode]:>14,.0f}{rel:>9.2f}x")
    if result["speedup_vs_opacus"] is not None:
        print(f"fused is {result['speedup_vs_opacus']:.1f}x Opacus hooks (dcgan pattern)")
    if args.json:
        print(json.dumps(result))
    return result


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else round(a / b, 2)


if __name__ == "__main__":
    main()
