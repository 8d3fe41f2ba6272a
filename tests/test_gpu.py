"""GPU-only checks: the fused DP step on CUDA, a tiny fit, and the speed benchmarks' CUDA paths.

Every test here skips (with the reason) when ``torch.cuda.is_available()`` is false, so the suite
passes on CPU-only CI; run it on a GPU node with ``pytest tests/test_gpu.py -ra``.
"""

from __future__ import annotations

import copy
import importlib.util
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pandas as pd
import pytest
import torch

import synthgen
from synthgen.models.dpsgd import clipped_gradients, noised_update, private_discriminator_step
from synthgen.models.networks import Discriminator

pytestmark = [
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
    # Opacus's full backward hooks warn when the input rows do not require grad; harmless.
    pytest.mark.filterwarnings("ignore:Full backward hook is firing"),
]

BENCH = Path(__file__).resolve().parents[1] / "bench"
CUDA = torch.device("cuda")


@pytest.fixture(autouse=True)
def _exact_matmul() -> Iterator[None]:
    # TF32 would round matmul inputs to 10 mantissa bits: fine for training, not for comparing
    # with the CPU to 1e-5. Restore whatever the process had.
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32 = before


def _disc_and_rows(n_real: int, n_fake: int) -> tuple[Discriminator, torch.Tensor]:
    torch.manual_seed(0)
    disc = Discriminator(40, (64, 64), dropout=0.0)
    rows = torch.randn(n_real + n_fake, 40, generator=torch.Generator().manual_seed(1)) * 3
    return disc, rows


@pytest.mark.parametrize("n_real", [37, 0])
def test_fused_step_on_cuda_equals_cpu(n_real: int) -> None:
    disc, rows = _disc_and_rows(n_real, 50)
    cpu_grads, cpu_norms, _ = clipped_gradients(disc, rows, n_real, 1.0)
    gpu_grads, gpu_norms, _ = clipped_gradients(copy.deepcopy(disc).to(CUDA), rows.to(CUDA),
                                                n_real, 1.0)
    assert all(g.device.type == "cuda" for g in gpu_grads)
    torch.testing.assert_close(gpu_norms.cpu(), cpu_norms, atol=1e-5, rtol=1e-5)
    for c, g in zip(cpu_grads, gpu_grads, strict=True):
        torch.testing.assert_close(g.cpu(), c, atol=1e-5, rtol=1e-5)
    if n_real:
        assert (cpu_norms > 1.0).any()  # clipping is exercised


def test_cuda_noise_is_seeded_and_scaled() -> None:
    """A CUDA generator gives the same update for the same seed, and noise of std sigma*C/B."""
    disc, rows = _disc_and_rows(37, 50)
    disc = disc.to(CUDA)
    grads, _, _ = clipped_gradients(disc, rows.to(CUDA), 37, 1.0)

    def update(seed: int) -> list[torch.Tensor]:
        gen = torch.Generator(device=CUDA).manual_seed(seed)
        return noised_update(grads, 2.0, 1.0, 10.0, generator=gen)

    a, b, c = update(5), update(5), update(6)
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x, y)
    assert any(not torch.equal(x, z) for x, z in zip(a, c, strict=True))
    clean = noised_update(grads, 0.0, 1.0, 10.0)
    noise = torch.cat([(x - n).flatten() for x, n in zip(a, clean, strict=True)])
    assert 0.18 < float(noise.std()) < 0.22  # 2.0 * 1.0 / 10


def test_private_step_on_cuda_matches_cpu_without_noise() -> None:
    disc, rows = _disc_and_rows(37, 50)
    gpu = copy.deepcopy(disc).to(CUDA)
    for model, x in ((disc, rows), (gpu, rows.to(CUDA))):
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        private_discriminator_step(model, opt, x, 37, noise_multiplier=0.0, max_grad_norm=1.0,
                                   expected_batch_size=40.0)
    for c, g in zip(disc.parameters(), gpu.parameters(), strict=True):
        torch.testing.assert_close(g.detach().cpu(), c.detach(), atol=1e-5, rtol=1e-4)


def test_tiny_fit_and_sample_on_cuda(people: pd.DataFrame) -> None:
    model = synthgen.Synthesizer(epsilon=1.0, epochs=1, seed=0, device="cuda").fit(people)
    assert model.info["device"].startswith("cuda")
    assert model.generator is not None
    assert next(model.generator.parameters()).device.type == "cuda"
    out = model.sample(300, seed=1)
    assert len(out) == 300
    assert list(out.columns) == list(people.columns)
    assert model.spent_epsilon <= 1.0 + 1e-9


def _load_bench(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_train_speed_bench_runs_on_cuda() -> None:
    bench = _load_bench("train_speed")
    result = bench.main(["--device", "cuda", "--batch", "512", "--steps", "2"])
    assert result["device"] == "cuda"
    for key in ("rows_per_s", "opacus_rows_per_s", "ghost_rows_per_s", "nonprivate_rows_per_s",
                "full_iteration_rows_per_s"):
        assert result[key] is not None and result[key] > 0, key


def test_sampling_speed_bench_runs_on_cuda() -> None:
    bench = _load_bench("sampling_speed")
    result = bench.main(["--device", "cuda", "--fit-rows", "1000", "--sample-rows", "4096",
                         "--rows", "8192", "--chunk", "2048"])
    assert result["device"].startswith("cuda")
    assert result["csv_rows"] == 8192
    assert result["rows_per_s"] > 0


def test_graph_poisson_sampler_is_poisson() -> None:
    """The captured sampler: each replay draws a fresh mask; the padded indices are exactly the
    sampled rows (then padding), and the batch size has the Poisson mean and variance."""
    from synthgen.models.trainer import GANTrainer, TrainingConfig, _IterationGraphs
    from synthgen.privacy.domains import ColumnDomain
    from synthgen.schema import ColumnKind
    from synthgen.transform import TableEncoder

    enc = TableEncoder([
        ColumnDomain("c", ColumnKind.CATEGORICAL, "object", "public", categories=["a", "b", "c"],
                     frequencies=[0.5, 0.3, 0.2, 0.0]),
        ColumnDomain("x", ColumnKind.CONTINUOUS, "float64", "public", bins=[(0.0, 1.0)],
                     frequencies=[1.0, 0.0]),
    ])
    trainer = GANTrainer(enc, TrainingConfig(batch_size=500), CUDA, seed=0)
    rows, q = 20_000, 0.025
    slots = torch.zeros(rows, 2, dtype=torch.int32).numpy()
    trainer._hot = torch.from_numpy(slots).to(CUDA).long() + torch.from_numpy(
        enc.slot_starts).to(CUDA)
    trainer._scalars = torch.zeros(rows, 1, device=CUDA)
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        for _ in range(3):  # eager warm-up, as train() does
            trainer._iteration(torch.arange(500, device=CUDA), None, 1.0, 500, 0.9)
        graphs = _IterationGraphs(trainer, rows, q, (1.0, 500, 0.9))
        counts = []
        for _ in range(400):
            graphs.sample_graph.replay()
            count = int(graphs.count)
            counts.append(count)
            sampled = graphs.mask.nonzero().squeeze(1)
            assert torch.equal(graphs.index[:count], sampled[: graphs.capacity])
            assert float(graphs.weight.sum()) == min(count, graphs.capacity)
        losses = graphs.step()
    torch.cuda.current_stream().wait_stream(stream)
    assert all(torch.isfinite(x).item() for x in losses)
    mean, var = float(torch.tensor(counts, dtype=torch.float64).mean()), float(
        torch.tensor(counts, dtype=torch.float64).var())
    expected = rows * q  # 500; the binomial variance is n q (1 - q) = 487.5
    assert abs(mean - expected) < 5 * (expected / 400) ** 0.5
    assert 0.7 * expected < var < 1.3 * expected
    assert len(set(counts)) > 20  # not a fixed-size batch


def test_cuda_fit_replays_graphs_and_stays_in_budget(people: pd.DataFrame) -> None:
    model = synthgen.Synthesizer(epsilon=1.0, epochs=5, seed=0, device="cuda").fit(people)
    assert model.info["training"]["cuda_graphs"] is True
    assert model.info["training"]["steps"] == model.info["training"]["planned_steps"]
    assert model.spent_epsilon <= 1.0 + 1e-9
    out = model.sample(2000, seed=1)
    assert len(out) == 2000 and list(out.columns) == list(people.columns)
    assert out["age"].between(0, 200).all()  # decoded from the public/DP bins


def test_padded_batch_on_cuda_adds_exactly_zero() -> None:
    disc, rows = _disc_and_rows(37, 50)
    disc = disc.to(CUDA)
    rows = rows.to(CUDA)
    grads, _, _ = clipped_gradients(disc, rows, 37, 1.0)
    padded = torch.cat([rows[:37], rows[:13] * 7, rows[37:]])
    weight = torch.cat([torch.ones(37, device=CUDA), torch.zeros(13, device=CUDA)])
    p_grads, _, _ = clipped_gradients(disc, padded, 50, 1.0, weight)
    for a, b in zip(grads, p_grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_device_decoder_on_cuda_equals_the_host_decode(people: pd.DataFrame) -> None:
    import numpy as np

    from synthgen.models.sampling import DeviceDecoder, generate_slots
    from synthgen.models.trainer import GANTrainer, TrainingConfig
    from synthgen.privacy import BudgetPlan
    from synthgen.privacy.domains import estimate_domains
    from synthgen.schema import infer_schema
    from synthgen.transform import TableEncoder

    est = estimate_domains(people, infer_schema(people), BudgetPlan(1.0, 1e-6),
                           np.random.default_rng(0))
    enc = TableEncoder(est.domains)
    trainer = GANTrainer(enc, TrainingConfig(), torch.device("cpu"), seed=0)
    (slots, scalars), = generate_slots(trainer.generator, trainer.cond, 5000, enc.nullable,
                                       gen=torch.Generator().manual_seed(3))
    codes, values = DeviceDecoder(enc, CUDA)(torch.from_numpy(slots).to(CUDA),
                                             torch.from_numpy(scalars).to(CUDA))
    device = enc.decode(codes.cpu().numpy(), values.cpu().numpy(), predecoded=True)
    pd.testing.assert_frame_equal(device, enc.decode(slots, scalars), check_exact=False,
                                  rtol=1e-12)
