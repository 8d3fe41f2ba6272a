"""An empirical lower bound on epsilon: a distinguishing game against the whole release path.

A smoke test: at K models per arm it cannot show a bound much above log K, so it cannot see
most violations. The audits with power are white-box, one mechanism at a time, 100,000 trials
each: ``python bench/privacy_audit.py --per-mechanism`` runs them (bench/mechanism_audit.py,
whose options follow; its last line is ``{"mechanisms": N, "min_tightness": T, "planted": P,
"planted_caught": C}``).

K models are trained on a small table (``ROWS`` base rows) and K on the same table plus one
worst-case canary row, each with a seed of its own; each released model is scored on how
likely its generator is to emit the canary row (the saved generator's own probabilities, not a
sample: see :func:`canary_log_likelihood`). At every threshold on the score, the true and false
positive rates get Clopper-Pearson 95 % intervals, and

    epsilon_lb = max over thresholds, both directions, of log((TPR_lower - delta) / FPR_upper)

(the standard auditing bound, Jagielski et al. 2020; Nasr et al. 2021; "both directions": the
scores above or below the threshold, with the canary's arm or the other as the positives).
A DP release at (epsilon, delta) keeps it at or below epsilon with 95 % confidence; K models
per arm cap it (perfect separation gives :func:`max_lower_bound`, about log K).

The game runs twice with claimed epsilon 1:

- ``dp``: ``Synthesizer(epsilon=1, schema=...)`` exactly as shipped (domain histograms, DP
  marginals, DP-SGD, PRV accountant); the bar is a bound at or below 1;
- ``nonprivate``: the same code with every mechanism's noise off, patched here (never in the
  library): histogram and row-count noise, the marginals' noise (tables and pair selection) and
  DP-SGD's noise and clipping (:func:`privacy_switched_off`); the bar is a bound above 2 (two
  times the claimed epsilon), which shows the game has the power to see a leak.

The canary: every value is on the schema's public category lists, so domain discovery (whose
threshold would fold a unique value into ``Other`` in both arms) cannot hide it, and the canary
reaches every mechanism as itself. Each of its cells is a value no base row holds (the worst
case for a one-row neighbour: each one-way cell moves from 0 to 1), and the score is the
log-likelihood of the whole row under the released generator. What separates the arms without
noise: a value whose released frequency is 0 is never generated, and with exact counts the
canary's values have frequency 0 exactly when the canary is out.

    python bench/privacy_audit.py                      # K = 100 models per arm and mode
    python bench/privacy_audit.py --models 16 --modes nonprivate   # a quick look

The last line is JSON: ``{"epsilon": 1, "models": K, "lower_bound_dp": a,
"lower_bound_nonprivate": b}`` (K models per arm: 4K fits in all). Exit status 0 when both bars
hold.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy.stats import beta

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere: this checkout's synthgen
    sys.path.insert(0, str(ROOT))

from synthgen import ColumnSpec, Synthesizer, TableSchema  # noqa: E402
from synthgen.models.trainer import TrainingConfig  # noqa: E402
from synthgen.schema import ColumnKind  # noqa: E402

CLAIMED_EPSILON = 1.0
ROWS = 300
# Base rows hold the first values of each list; the canary holds the last one of every list.
COLUMNS = {"city": ["north", "south", "east", "west", "canary-city"],
           "job": ["clerk", "nurse", "driver", "canary-job"],
           "plan": ["basic", "plus", "canary-plan"]}
# Tiny networks and few epochs: what lets 4K fits run in minutes on a CPU. The audit's bars do
# not depend on the model's quality, only on what its release reveals.
EPOCHS = 10.0
CONFIG = TrainingConfig(d_hidden=(32, 32), g_hidden=(32, 32), noise_dim=16,
                        table_warmup_steps=100)
# Noise draws the canary's likelihood is averaged over (the generator's exact distribution is
# the mean over its noise; 20,000 draws keep the Monte-Carlo error far below the gap).
DRAWS = 20_000
CONFIDENCE = 0.95
# What "no clipping" means for the non-private arm: a norm no per-row gradient reaches.
NO_CLIP = 1e9


def audit_table(seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame, TableSchema]:
    """(base table, the canary row, the public schema). The base rows hold neither the
    canary's values nor anything else that would tell its presence apart."""
    rng = np.random.default_rng(seed)
    base = pd.DataFrame({name: rng.choice(values[:-1], ROWS) for name, values in COLUMNS.items()})
    canary = pd.DataFrame({name: [values[-1]] for name, values in COLUMNS.items()})
    schema = TableSchema(columns=[
        ColumnSpec(name=name, kind=ColumnKind.CATEGORICAL, categories=values)
        for name, values in COLUMNS.items()])
    return base, canary, schema


@torch.no_grad()
def canary_log_likelihood(synth: Synthesizer, canary: pd.DataFrame, draws: int = DRAWS,
                          seed: int = 0) -> float:
    """log P(the generator emits the canary row), from the released model alone.

    Given its noise and conditional vector, the generator draws each column's slot
    independently from its softmax, so the row's probability is the mean over (noise,
    condition) of the product of its cells' probabilities: computed in float64 log space, so a
    forbidden value (logit pinned at -1e4) gives a very negative but finite score.
    """
    generator, cond, encoder = synth.generator, synth.cond, synth.encoder
    assert generator is not None and cond is not None and encoder is not None
    generator.eval()
    gen = torch.Generator(device=cond.device).manual_seed(seed)
    conditions, _ = cond.draw(draws, gen)
    z = torch.randn(draws, generator.noise_dim, generator=gen, device=cond.device)
    raw = generator(z, conditions).double()
    total = torch.zeros(draws, dtype=torch.float64, device=cond.device)
    for span, domain in zip(encoder.discrete_spans, encoder.learned, strict=True):
        slot = list(domain.categories).index(canary[domain.name].iloc[0])
        total += torch.log_softmax(raw[:, span.start : span.stop], dim=1)[:, slot]
    return float(torch.logsumexp(total, 0) - math.log(draws))


# --- the bound ------------------------------------------------------------------------------


def clopper_pearson(successes: int, trials: int, confidence: float = CONFIDENCE
                    ) -> tuple[float, float]:
    """The two-sided Clopper-Pearson interval of a binomial proportion."""
    alpha = 1 - confidence
    lower = 0.0 if successes == 0 else float(beta.ppf(alpha / 2, successes,
                                                      trials - successes + 1))
    upper = 1.0 if successes == trials else float(beta.ppf(1 - alpha / 2, successes + 1,
                                                           trials - successes))
    return lower, upper


def _bound(true_pos: int, positives: int, false_pos: int, negatives: int,
           delta: float) -> float:
    """log((TPR_lower - delta) / FPR_upper), or 0 when that is not positive: TPR is
    ``true_pos / positives``, FPR ``false_pos / negatives``."""
    tpr_lower = clopper_pearson(true_pos, positives)[0]
    fpr_upper = clopper_pearson(false_pos, negatives)[1]
    if tpr_lower - delta <= 0:
        return 0.0
    return max(0.0, math.log((tpr_lower - delta) / fpr_upper))


@dataclass
class Bound:
    epsilon: float
    threshold: float
    # which set of scores ("above" or "below" the threshold) and which arm it is more likely
    # under: "above, in over out" says a score at or above the threshold means "canary in"
    direction: str
    hits: int  # models of the first arm whose score falls in the set
    false_hits: int  # models of the second arm whose score falls in it


def epsilon_lower_bound(inside: list[float], outside: list[float], delta: float) -> Bound:
    """The best bound over every threshold between observed scores, in both directions.

    DP bounds P[M(D) in S] <= e^eps P[M(D') in S] + delta for every set S and both orders of
    the neighbours, so each threshold gives four bounds: S the scores at or above it or those
    below it, with the canary's table as D or as D'.
    """
    best = Bound(0.0, math.inf, "none", 0, 0)
    k_in, k_out = len(inside), len(outside)
    for t in sorted(set(inside) | set(outside)):
        above_in = sum(s >= t for s in inside)
        above_out = sum(s >= t for s in outside)
        for direction, hits, k_hits, false_hits, k_false in (
            ("above, in over out", above_in, k_in, above_out, k_out),
            ("above, out over in", above_out, k_out, above_in, k_in),
            ("below, in over out", k_in - above_in, k_in, k_out - above_out, k_out),
            ("below, out over in", k_out - above_out, k_out, k_in - above_in, k_in),
        ):
            eps = _bound(hits, k_hits, false_hits, k_false, delta)
            if eps > best.epsilon:
                best = Bound(eps, t, direction, hits, false_hits)
    return best


def max_lower_bound(models: int, delta: float) -> float:
    """The bound a perfect separation of ``models`` against ``models`` gives: the most this
    game can show with K models per arm."""
    return _bound(models, models, 0, models, delta)


# --- the two modes --------------------------------------------------------------------------


@contextlib.contextmanager
def privacy_switched_off(only_dp_sgd: bool = False) -> Iterator[None]:
    """NOT PRIVATE, for the game's power check only: every mechanism of a fit without noise.

    Monkeypatches module globals (restored on exit), so that the same ``Synthesizer.fit``
    runs: the domain histograms and the row counts with noise multiplier 0 (exact counts; no
    category is discovered, every one is on the public lists), the marginals' three releases
    with multiplier 0 (exact tables, pair selection on exact scores), DP-SGD calibrated to
    noise 0 and stepped without clipping. The accountant is told everything is free, so that
    the budget checks let the noiseless fit run. The library has no such switch.

    ``only_dp_sgd``: only the DP-SGD step loses its noise and clipping (what a trainer bug
    would do, as in ``tests/test_audit_canary.py``); histograms and marginals stay as shipped.
    """
    import synthgen.models.trainer as trainer_module
    import synthgen.privacy.budget as budget_module
    import synthgen.privacy.domains as domains_module
    import synthgen.privacy.ledger as ledger_module
    import synthgen.privacy.release as release_module
    import synthgen.synthesizer as synthesizer_module

    real_step = trainer_module.private_discriminator_step

    def noiseless_step(*args: Any, **kwargs: Any) -> Any:
        from synthgen.privacy.release import GradientRelease

        # a release of its own, with no noise and no clipping, in place of the fit's
        return real_step(*args, **{**kwargs, "release": GradientRelease(
            0.0, NO_CLIP, 1.0, args[2].device, seed=0)})

    def free(*_: Any, **__: Any) -> float:
        return 0.0

    patches: list[tuple[Any, str, Callable[..., Any]]] = [
        (trainer_module, "private_discriminator_step", noiseless_step),
    ]
    if not only_dp_sgd:
        patches += [
            (domains_module, "gaussian_noise_multiplier", free),
            (release_module, "gaussian_epsilon", free),
            (release_module, "epsilon_of", free),
            (budget_module, "gaussian_noise_multiplier", free),  # the size probe's row count
            (synthesizer_module, "marginal_multipliers", lambda *_: (0.0, 0.0, 0.0)),
            (synthesizer_module, "calibrate_sgd_noise", free),
            (synthesizer_module, "epsilon_of", free),
            (ledger_module, "epsilon_of", free),
        ]
    saved = [(module, name, getattr(module, name)) for module, name, _ in patches]
    try:
        for module, name, replacement in patches:
            setattr(module, name, replacement)
        yield
    finally:
        for module, name, original in saved:
            setattr(module, name, original)


# What each mode switches off; "sgd-off" is a diagnostic, not one of the bars.
MODES: dict[str, Callable[[], contextlib.AbstractContextManager[None]]] = {
    "dp": contextlib.nullcontext,
    "nonprivate": privacy_switched_off,
    "sgd-off": lambda: privacy_switched_off(only_dp_sgd=True),
}


@dataclass
class Trial:
    mode: str
    canary_in: bool
    seed: int
    score: float
    spent_epsilon: float
    delta: float
    noise_multiplier: float
    seconds: float
    cpu_seconds: float


def run_trial(mode: str, canary_in: bool, seed: int) -> Trial:
    """Fit one model (with or without the canary) and score its release."""
    torch.set_num_threads(1)  # tiny models: one thread each, on a shared machine
    started, cpu_started = time.perf_counter(), time.process_time()
    base, canary, schema = audit_table()
    table = pd.concat([base, canary], ignore_index=True) if canary_in else base
    with MODES[mode](), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the default delta's size warning, every fit
        synth = Synthesizer(CLAIMED_EPSILON, schema=schema, epochs=EPOCHS, config=CONFIG,
                            seed=seed, device="cpu").fit(table)
    assert synth.ledger is not None
    score = canary_log_likelihood(synth, canary)
    return Trial(mode, canary_in, seed, score, synth.spent_epsilon, synth.ledger.delta(),
                 float(synth.info["training"]["noise_multiplier"]),
                 time.perf_counter() - started, time.process_time() - cpu_started)


def _run(args: tuple[str, bool, int]) -> Trial:
    return run_trial(*args)


def play(modes: list[str], models: int, workers: int, first_seed: int) -> list[Trial]:
    """Every (mode, arm, model) fit, with a distinct seed per model of each mode."""
    jobs = [(mode, canary_in, first_seed + 2 * k + int(canary_in))
            for mode in modes for k in range(models) for canary_in in (False, True)]
    if workers <= 1:
        return [_run(job) for job in jobs]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(_run, jobs))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=int, default=100, help="models per arm and mode (K)")
    parser.add_argument("--modes", nargs="+", default=["dp", "nonprivate"],
                        choices=list(MODES), help="sgd-off: a diagnostic (DP-SGD's noise and "
                        "clipping off, histograms and marginals as shipped)")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1),
                        help="processes, one torch thread each (default: 2, or 1 on one CPU)")
    parser.add_argument("--seed", type=int, default=0, help="first model's seed")
    parser.add_argument("--scores", type=Path, help="write every model's trial here (JSON)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    trials = play(args.modes, args.models, args.workers, args.seed)
    seconds = time.perf_counter() - started
    if args.scores is not None:
        args.scores.write_text(json.dumps([asdict(t) for t in trials], indent=1))

    bounds: dict[str, float] = {}
    print(f"claimed epsilon {CLAIMED_EPSILON:g}; {args.models} models per arm; {ROWS} base rows "
          f"+ canary; {os.cpu_count()} CPUs, {args.workers} worker(s)")
    print(f"{'mode':<11} {'bound':>6} {'max':>6}  {'hit/K':>6} {'false/K':>7}  "
          f"{'score in (median)':>17} {'out (median)':>12}  {'spent eps':>9} {'sigma':>6} "
          f"{'s/fit':>6}  set, arms")
    for mode in args.modes:
        inside = [t.score for t in trials if t.mode == mode and t.canary_in]
        outside = [t.score for t in trials if t.mode == mode and not t.canary_in]
        mine = [t for t in trials if t.mode == mode]
        delta = max(t.delta for t in mine)
        best = epsilon_lower_bound(inside, outside, delta)
        bounds[mode] = best.epsilon
        print(f"{mode:<11} {best.epsilon:6.3f} {max_lower_bound(args.models, delta):6.3f}  "
              f"{best.hits:>3}/{args.models:<3} {best.false_hits:>3}/{args.models:<3}  "
              f"{np.median(inside):17.2f} {np.median(outside):12.2f}  "
              f"{max(t.spent_epsilon for t in mine):9.4f} "
              f"{np.median([t.noise_multiplier for t in mine]):6.3f} "
              f"{np.mean([t.seconds for t in mine]):6.2f}  {best.direction}")
    print(f"wall time {seconds:.0f} s ({len(trials)} fits; CPU time in the fits "
          f"{sum(t.cpu_seconds for t in trials):.0f} s)")
    summary = {"epsilon": CLAIMED_EPSILON, "models": args.models,
               "lower_bound_dp": bounds.get("dp"),
               "lower_bound_nonprivate": bounds.get("nonprivate"),
               **({"lower_bound_sgd_off": bounds["sgd-off"]} if "sgd-off" in bounds else {})}
    print(json.dumps(summary))
    return summary


def bars_hold(summary: dict[str, Any]) -> bool:
    dp, leaky = summary["lower_bound_dp"], summary["lower_bound_nonprivate"]
    return (dp is None or dp <= CLAIMED_EPSILON) and (
        leaky is None or leaky > 2 * CLAIMED_EPSILON)


if __name__ == "__main__":
    if "--per-mechanism" in sys.argv[1:]:
        import mechanism_audit  # beside this file: the script's folder is on sys.path

        sys.exit(0 if mechanism_audit.bars_hold(mechanism_audit.main(sys.argv[1:])) else 1)
    sys.exit(0 if bars_hold(main()) else 1)
