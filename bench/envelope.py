"""How well conditioned sampling's envelope fits a model: per condition, the share of the
model's rows that honour it, the draws per row the envelope needs after its first round, and
the probability of the rows above their bounds (the one departure from exactness), each over
several first rounds checked on fresh plain draws.

    python bench/envelope.py --data ../shared/data/adult --epsilon 1 --seed 0
    python bench/envelope.py --model model.zip
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from utility import load_adult  # noqa: E402

from synthgen import Synthesizer  # noqa: E402
from synthgen.models import conditional_sampling as cs  # noqa: E402
from synthgen.models.conditions import (  # noqa: E402
    ConditionsSpec,  # noqa: E402
    check,
    facts_of,
)

CONDITIONS: list[ConditionsSpec] = [
    {"sex": "Female", "Y": ">50K"}, {"sex": "Female"}, {"Y": ">50K"}, ["age>=60"]]


def measure(model: Synthesizer, conditions: ConditionsSpec, rounds: int, fresh: int,
            rows: int | None) -> tuple[float, list[float], list[float]]:
    encoder, generator, cond = model._require_fitted()
    generator.eval()
    spec = check(conditions, None, *facts_of(encoder.domains))
    plan = cs.SamplingPlan(encoder, cond, spec, 1)
    draw = cs._Draw(generator, encoder, np.stack([s.allowed for s in plan.strata]), cond)
    shares, draws, above = [], [], []
    with torch.no_grad():
        for seed in range(rounds):
            gen = torch.Generator(device=cond.device).manual_seed(seed)
            envelope = cs._Envelope(cond, generator.noise_dim, rows)
            _, position, z = envelope.propose(envelope.pilot, gen)
            envelope.learn(position, z, draw.chance(draw.first(len(z), position, gen, z).logits))
            _, position, z = cs._Envelope(cond, generator.noise_dim).propose(fresh, gen)
            chance = draw.chance(draw.first(fresh, position, gen, z).logits)
            bound = envelope.bound.index_select(0, envelope.cell_of(position, z))
            share = float(chance.mean())
            shares.append(share)
            draws.append(envelope.mass / share)
            above.append(float((chance - bound).clamp(min=0).sum() / chance.sum()))
    return float(np.mean(shares)), draws, above


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, help="a saved model (else one is fitted)")
    parser.add_argument("--data", type=Path, help="the Adult folder, to fit a model")
    parser.add_argument("--epsilon", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=3, help="first rounds per condition")
    parser.add_argument("--fresh", type=int, default=1 << 19, help="plain draws per check")
    parser.add_argument("--rows", type=int, help="a request's rows (they size the first "
                        "round: 4,096 to 16,384 draws); default the largest first round")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.model is not None:
        model = Synthesizer.load(args.model, device="cpu")
    elif args.data is not None:
        model = Synthesizer(epsilon=args.epsilon, seed=args.seed, device="cpu").fit(
            load_adult(args.data / "adult.data"))
    else:
        parser.error("give --model or --data")
    print("| condition | share of the model's rows | draws per row after the first round "
          "| probability above the bounds |")
    print("| --- | --- | --- | --- |")
    for conditions in CONDITIONS:
        share, draws, above = measure(model, conditions, args.rounds, args.fresh, args.rows)
        print(f"| {conditions} | {share:.2%} | {np.mean(draws):.2f} ({min(draws):.2f}-"
              f"{max(draws):.2f}) | {np.mean(above):.1e} (largest {max(above):.1e}) |")


if __name__ == "__main__":
    main()
