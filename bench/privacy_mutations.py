"""Mutation testing of the privacy path: plant each known privacy bug, check the tests catch it.

For each mutation: copy the project (without .git and .venv) to a temporary folder, apply one
small text substitution (checking that it applied exactly once: a substitution that no longer
matches after a refactor is reported as ``not applied`` and counts as *not* caught, so the
script cannot pass by going stale), run a fast selection of privacy tests against the copy, and
call the mutation caught when they fail. Prints a table, then one JSON line
``{"mutations": N, "caught": M}``. Exit status 0 only when every mutation is caught.

    python bench/privacy_mutations.py                 # all mutations
    python bench/privacy_mutations.py --only zero-noise --keep   # one, keep its copy

Adapting a mutation after a refactor: change its ``old``/``new`` text below so that it plants
the same bug in the new code.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# The privacy tests run against each mutant: fast (well under a minute each on 2 cores).
TESTS = [
    "tests/test_release.py",
    "tests/test_replay.py",
    "tests/test_privacy_pinned.py",
    "tests/test_dpsgd_reference.py",
    "tests/test_mechanisms.py",
    "tests/test_privacy_accounting.py",
    "tests/test_marginals.py",
    "tests/test_formats.py",
]


@dataclass(frozen=True)
class Mutation:
    name: str
    what: str
    path: str
    old: str
    new: str


MUTATIONS = [
    Mutation(
        "histogram-sigma-without-sqrt-k",
        "the joint histogram's noise ignores its sqrt(k + 1) sensitivity",
        "synthgen/privacy/domains.py",
        "sensitivity = math.sqrt(k + 1)",
        "sensitivity = 1.0",
    ),
    # Since every mechanism's noise and its ledger entry come from one call (privacy/release.py),
    # "the entry claims other noise than applied" can only be planted in that call: for all
    # releases at once (this mutation stood for the histogram and the marginals apart before).
    Mutation(
        "ledger-over-claims-noise",
        "every Gaussian release's ledger entry claims 1.5x the noise it applied",
        "synthgen/privacy/release.py",
        "mechanism=mechanism, reads=reads, noise_multiplier=noise_multiplier,",
        "mechanism=mechanism, reads=reads, noise_multiplier=noise_multiplier * 1.5,",
    ),
    Mutation(
        "fixed-size-shuffled-batches",
        "fixed-size shuffled batches instead of Poisson sampling",
        "synthgen/models/trainer.py",
        "index = self._poisson_mask(n, q).nonzero().squeeze(1)",
        "index = torch.randperm(n, generator=self._private_rng, device=self.device)"
        "[: max(1, round(n * q))]",
    ),
    Mutation(
        "no-clipping",
        "the DP step clips nothing (infinite norm)",
        "synthgen/models/dpsgd.py",
        "clipped_gradients(disc, rows, n_real, release.max_grad_norm, real_weight,",
        "clipped_gradients(disc, rows, n_real, float('inf'), real_weight,",
    ),
    Mutation(
        "fake-weight-after-clipping",
        "the generated rows' weight (B / generated rows) scales every row after clipping, "
        "the real rows' too (sensitivity fake_weight * max_grad_norm)",
        "synthgen/models/dpsgd.py",
        "        scaled = b * coef.unsqueeze(1)\n",
        "        scaled = b * coef.unsqueeze(1) * fake_weight\n",
    ),
    Mutation(
        "row-norm-not-squared",
        "the per-row gradient norm adds the input norms unsquared (a wrong clipping norm)",
        "synthgen/models/dpsgd.py",
        "(torch.linalg.vector_norm(a, dim=1).square() + 1.0) * b_sq",
        "(torch.linalg.vector_norm(a, dim=1) + 1.0) * b_sq",
    ),
    Mutation(
        "zero-noise",
        "the DP step's release adds no noise",
        "synthgen/privacy/release.py",
        "std = self.noise_multiplier * self.max_grad_norm",
        "std = 0.0",
    ),
    Mutation(
        "charge-one-step-fewer",
        "the ledger charges one DP-SGD step fewer than ran",
        "synthgen/synthesizer.py",
        "sgd.charge(ran)",
        "sgd.charge(max(ran - 1, 0))",
    ),
    Mutation(
        "drop-threshold-delta",
        "the threshold's failure probability is left out of delta",
        "synthgen/privacy/domains.py",
        "extra_delta=plan.threshold_delta if discovered else 0.0,",
        "extra_delta=0.0,",
    ),
    Mutation(
        "q-from-another-n",
        "rows drawn at batch / (exact n) while the ledger charges q from the DP row count",
        "synthgen/synthesizer.py",
        "            sampling_rate=q,\n            batch=batch,",
        "            sampling_rate=min(batch / len(df), 1.0),\n            batch=batch,",
    ),
    # The DP marginals (synthgen/privacy/marginals.py): three Gaussian releases in the ledger.
    Mutation(
        "marginal-tables-without-sqrt-tables",
        "the one-way and two-way tables' noise ignores their sqrt(tables) sensitivity",
        "synthgen/privacy/marginals.py",
        "sensitivity=math.sqrt(len(tables)),",
        "sensitivity=1.0,",
    ),
    Mutation(
        "selection-sensitivity-under-recorded",
        "the pair-selection score's sensitivity taken as 0.5 (it is 1), in noise and ledger",
        "synthgen/privacy/marginals.py",
        "SCORE_SENSITIVITY = 1.0",
        "SCORE_SENSITIVITY = 0.5",
    ),
    Mutation(
        "selection-without-score-sensitivity",
        "the selection scores released with sensitivity 1, not sqrt(pairs)",
        "synthgen/privacy/marginals.py",
        "sensitivity=SCORE_SENSITIVITY * math.sqrt(len(candidates)),",
        "sensitivity=SCORE_SENSITIVITY,",
    ),
    Mutation(
        "selection-scored-against-own-margins",
        "each pair scored against its own exact one-way counts (moves by up to 4 a row) while "
        "charged as if scored against the released tables (1)",
        "synthgen/privacy/marginals.py",
        "    expected = rows * np.outer(margins[a], margins[b])\n",
        "    grid = counts.reshape(shape)\n"
        "    expected = np.outer(grid.sum(1), grid.sum(0)) / max(float(grid.sum()), 1.0)\n",
    ),
    Mutation(
        "one-way-tables-outside-the-release",
        "the one-way tables noised by hand, outside the releaser (so not in the ledger)",
        "synthgen/privacy/marginals.py",
        "    released = release.gaussian(mechanism, reads, counts, noise_multiplier=multiplier,",
        "    released = [c + release.streams['main'].normal(0.0, sigma, size=c.shape) for c in"
        " counts] if mechanism == 'gaussian_one_way_marginals' else release.gaussian("
        "mechanism, reads, counts, noise_multiplier=multiplier,",
    ),
    # Issue 22: reads outside the ledger, and accounting slips that no pinned test watched.
    Mutation(
        "size-probe-not-recorded",
        "the size probe's noisy row count drawn by hand, outside the releaser",
        "synthgen/synthesizer.py",
        "share = domain_share(self.epsilon, delta, size_probe(len(df), self.epsilon,",
        "share = domain_share(self.epsilon, delta, (lambda *_: len(df) + noise_rng(None)"
        ".normal(0.0, 30.0))(len(df), self.epsilon,",
    ),
    Mutation(
        "exact-row-count-in-info",
        "the fit info (model, report, default output size) holds the exact row count",
        "synthgen/synthesizer.py",
        '"rows": int(round(rows_estimate)),',
        '"rows": len(df),',
    ),
    Mutation(
        "null-counts-without-noise",
        "each column's null count taken from the exact counts, not the noisy histogram",
        "synthgen/privacy/domains.py",
        "        texts = cast(Keys, next(noisy_values))",
        "        parts['null'] = counted[spec.name].parts['null'].astype(np.float64)\n"
        "        texts = cast(Keys, next(noisy_values))",
    ),
    Mutation(
        "pair-selection-on-exact-scores",
        "the pairs chosen on the exact independence scores, the noisy ones discarded",
        "synthgen/privacy/marginals.py",
        "excess = cast(np.ndarray, noisy) - null",
        "excess = scores - null",
    ),
    Mutation(
        "ledger-composed-at-full-delta",
        "the ledger composes at the whole delta instead of the accountant's share",
        "synthgen/synthesizer.py",
        "accountant_delta=delta - delta * BudgetPlan.threshold_delta_share)",
        "accountant_delta=delta)",
    ),
    # Issue 26: the accountant composes the full-batch Gaussians as one before PRV.
    Mutation(
        "merged-gaussians-keep-the-least-noise",
        "the releases before DP-SGD composed as the one with the least noise (not all of them)",
        "synthgen/privacy/accountant.py",
        "sigma = sum(t / s**2 for s, t in full) ** -0.5",
        "sigma = min(s for s, _ in full)",
    ),
    Mutation(
        "merged-gaussians-ignore-repeats",
        "a full-batch release run t times counted once in the merged Gaussian",
        "synthgen/privacy/accountant.py",
        "sigma = sum(t / s**2 for s, t in full) ** -0.5",
        "sigma = sum(1 / s**2 for s, t in full) ** -0.5",
    ),
    Mutation(
        "truncated-poisson-batch",
        "a Poisson batch cut at the expected batch size",
        "synthgen/models/trainer.py",
        "index = self._poisson_mask(n, q).nonzero().squeeze(1)",
        "index = self._poisson_mask(n, q).nonzero().squeeze(1)[: step_args[0]]",
    ),
    Mutation(
        "threshold-for-one-column",
        "the partition threshold computed for one discovered column instead of all of them",
        "synthgen/privacy/domains.py",
        "threshold = partition_threshold(sigma, plan.threshold_delta, len(discovered))",
        "threshold = partition_threshold(sigma, plan.threshold_delta, 1)",
    ),
    Mutation(
        "marginals-normalised-by-exact-count",
        "the marginal tables divided by the exact row count instead of the DP one",
        "synthgen/privacy/marginals.py",
        "    n = max(rows_estimate, 1.0)",
        "    n = float(len(slots))",
    ),
    Mutation(
        "format-vote-sigma-without-sqrt-k",
        "the format vote's noise ignores its sqrt(columns) sensitivity",
        "synthgen/privacy/domains.py",
        "sensitivity = math.sqrt(len(voters))",
        "sensitivity = 1.0",
    ),
    Mutation(
        "format-vote-not-composed",
        "the format vote spends on top of the preprocessing share (histograms keep their noise)",
        "synthgen/privacy/domains.py",
        "multiplier = 1.0 / math.sqrt(1.0 / multiplier**2 - 1.0 / vote_multiplier**2)",
        "multiplier = multiplier",
    ),
    Mutation(
        "format-vote-on-exact-counts",
        "formats elected from the exact vote counts (the noise drawn but not added)",
        "synthgen/privacy/domains.py",
        "for spec, votes in zip(voters, noisy, strict=True)}",
        "for spec, votes in zip(voters, counts, strict=True)}",
    ),
    Mutation(
        "rest-window-from-exact-rows",
        "a declared number's rest (the window beside its atom) sized by the exact row count",
        "synthgen/privacy/domains.py",
        "thresholds.get(spec.name, w * threshold) / w,\n                       "
        "max(rows_estimate, 1.0),",
        "thresholds.get(spec.name, w * threshold) / w,\n                       float(rows),",
    ),
    Mutation(
        "pooled-rows-exact",
        "the tables projected at the exact row count instead of one pooled from released totals",
        "synthgen/privacy/marginals.py",
        "        n = pooled_rows(n, rows_sd, noisy_one, one_sigma)",
        "        n = float(len(slots))",
    ),
    Mutation(
        "coded-cells-from-exact-counts",
        "a run of codes' end read as vouched for by the exact counts (a cell with rows), not by "
        "the domain's bins and released frequencies",
        "synthgen/privacy/marginals.py",
        "    coded = [_coded_cells(g, b, u) if e is not None else None\n",
        "    coded = [np.bincount(np.asarray(g)[slots[:, c]], minlength=max(g) + 1) > 0\n"
        "             if e is not None else None for c, (g, e) in enumerate(zip(one_groups,\n"
        "                                                                      evidence))]\n"
        "    _unused = [_coded_cells(g, b, u) if e is not None else None\n",
    ),
    Mutation(
        "declared-bounds-counts-exact",
        "a column with declared bounds (public keys, atoms among them) read from exact counts",
        "synthgen/privacy/domains.py",
        "        texts = cast(Keys, next(noisy_values))",
        "        if spec.lower is not None:\n"
        "            parts['number'] = counted[spec.name].parts['number'].astype(np.float64)\n"
        "        texts = cast(Keys, next(noisy_values))",
    ),
    # Code columns weighted in the joint histogram (issue 21's ZIP codes): each row adds w to
    # its key, the sensitivity and the column's release threshold must say so.
    Mutation(
        "code-weight-outside-sensitivity",
        "a weighted code column's rows add w to its key but the sensitivity counts them as 1",
        "synthgen/privacy/domains.py",
        "sensitivity = math.sqrt(k + 1 + sum(w**2 - 1 for w in weights.values()))",
        "sensitivity = math.sqrt(k + 1)",
    ),
    Mutation(
        "code-threshold-unscaled",
        "a weighted code column's keys released above the unweighted threshold (a key only "
        "one row has counts w, not 1)",
        "synthgen/privacy/domains.py",
        "thresholds = {name: w * partition_threshold(sigma / w, plan.threshold_delta,",
        "thresholds = {name: partition_threshold(sigma, plan.threshold_delta,",
    ),
    # Issue 21's dates and tails: which bins the one-way table measures as cells of their own
    # (a date range's ends, an offered octave, an empty key) is read off the domain
    # histograms' released frequencies, never the encoded rows.
    Mutation(
        "lone-bins-from-exact-counts",
        "the one-way table's cells of their own chosen where the exact rows leave a bin empty",
        "synthgen/synthesizer.py",
        "            points=[d.lone_bins() if num else None",
        "            points=[(np.bincount(slots[:, learned.index(d)], minlength=len(d.bins))"
        "[:len(d.bins)] == 0).tolist() if num else None",
    ),
]


def copy_project(dest: Path) -> None:
    ignore = shutil.ignore_patterns(".git", ".venv", "__pycache__", "*.egg-info", ".mypy_cache",
                                    ".ruff_cache", ".pytest_cache", "synthgen-data")
    shutil.copytree(ROOT, dest, ignore=ignore, symlinks=True)


def apply(mutation: Mutation, project: Path) -> bool:
    """Plant the mutation; False when its text is not found exactly once."""
    path = project / mutation.path
    text = path.read_text(encoding="utf-8")
    if text.count(mutation.old) != 1:
        return False
    path.write_text(text.replace(mutation.old, mutation.new), encoding="utf-8")
    return True


# run_tests' code for a run cut by the timeout: reported as such, and not caught (a mutant that
# only makes the tests slow has not been shown to fail them)
TIMED_OUT = -1


def run_tests(project: Path, timeout_s: float) -> tuple[int, float, str]:
    """Run the privacy tests on ``project``'s code (it comes first on the import path)."""
    env = {**os.environ, "PYTHONPATH": str(project), "PYTHONDONTWRITEBYTECODE": "1"}
    check = subprocess.run([sys.executable, "-c", "import synthgen; print(synthgen.__file__)"],
                           cwd=project, env=env, capture_output=True, text=True, check=True)
    if not Path(check.stdout.strip()).resolve().is_relative_to(project.resolve()):
        raise SystemExit(f"the copy's synthgen is not the one imported: {check.stdout}")
    started = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                               *TESTS], cwd=project, env=env, capture_output=True, text=True,
                              timeout=timeout_s)
        code, out = done.returncode, done.stdout
    except subprocess.TimeoutExpired:
        code, out = TIMED_OUT, "timed out"
    failed = [line for line in out.splitlines() if line.startswith("FAILED")]
    return code, time.perf_counter() - started, failed[0] if failed else out.strip()[-120:]


def main(argv: list[str] | None = None) -> dict[str, int]:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", help="names of the mutations to run")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per test run")
    parser.add_argument("--keep", action="store_true", help="keep the mutated copies")
    args = parser.parse_args(argv)
    chosen = [m for m in MUTATIONS if not args.only or m.name in args.only]
    rows = []
    with tempfile.TemporaryDirectory(prefix="synthgen-mutants-") as tmp:
        base = Path(tmp) / "unmutated"
        copy_project(base)
        code, seconds, why = run_tests(base, args.timeout)
        if code != 0:  # the tests must pass on the real code, or "caught" means nothing
            raise SystemExit(f"the privacy tests fail without any mutation: {why}")
        rows.append(("(none)", "tests pass on the real code", "yes", "passed", seconds, ""))
        for mutation in chosen:
            project = Path(tmp) / mutation.name
            shutil.copytree(base, project, symlinks=True)
            if not apply(mutation, project):
                rows.append((mutation.name, mutation.what, "NO", "not applied", 0.0,
                             f"{mutation.path}: text not found once"))
                continue
            code, seconds, why = run_tests(project, args.timeout)
            result = ("TIMED OUT" if code == TIMED_OUT else "caught" if code != 0
                      else "MISSED")
            rows.append((mutation.name, mutation.what, "yes", result, seconds, why))
            if args.keep:
                shutil.copytree(project, ROOT.parent / f"mutant-{mutation.name}",
                                dirs_exist_ok=True)
    caught = sum(1 for r in rows[1:] if r[3] == "caught")
    width = max(len(r[0]) for r in rows)
    print(f"{'mutation':<{width}}  applied  result       seconds  first failing test")
    for name, _what, applied, result, seconds, why in rows:
        print(f"{name:<{width}}  {applied:<7}  {result:<11}  {seconds:7.1f}  {why[:90]}")
    summary = {"mutations": len(chosen), "caught": caught}
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    result = main()
    sys.exit(0 if result["caught"] == result["mutations"] else 1)
