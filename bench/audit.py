"""Privacy audit and report on UCI Adult (the protocol of bench/utility.py, plus the audit).

Trains through the CLI on adult.data (32,561 rows, '?' as missing) written as a plain CSV, with
``--report`` (audit on, 10% holdout split off before training) and ``--target Y``. Prints the
audit's figures against the bars (DCR share 0.45-0.55, MIA AUC <= 0.55, exact-match rate no
higher than the real reference), the quality and utility sections, and how long the report
takes: evaluation and audit inside the run, ``render_html`` in this process, and headless
Chromium loading the HTML; and whether the JSON validates against docs/report.schema.json.

    python bench/audit.py --data ../shared/data/adult --epsilon 1
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from utility import load_adult  # noqa: E402

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run", "--dump-dom"]


def chromium_seconds(page: Path, profile: Path) -> float | None:
    """Wall time of headless Chromium loading the page and dumping its DOM (warm profile)."""
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        return None
    cmd = [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", page.as_uri()]
    subprocess.run(cmd, capture_output=True, timeout=120, check=True)  # creates the profile
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True)
    seconds = time.perf_counter() - t0
    assert out.stdout.count("<svg") >= 3, "the figures are missing from the DOM"
    return seconds


def reference_spread(plain: Path, out: Path, args: argparse.Namespace) -> dict[str, float]:
    """DCR share and MIA AUC over 5 other random training reference sets: how much of the
    distance from 0.5 is the draw of the reference rows."""
    import numpy as np
    import pandas as pd

    from synthgen.evaluate import evaluation_kinds, privacy_audit, split_holdout
    from synthgen.io import read_table

    table = read_table(plain)  # what the CLI read; the same seed gives the same split
    split = split_holdout(table, args.holdout_share, seed=args.seed)
    synthetic = pd.read_csv(out, nrows=50_000, low_memory=False)
    kinds = evaluation_kinds(split.train)
    runs = [privacy_audit(split.train, split.holdout, synthetic, kinds, seed=s)
            for s in range(1, 6)]
    dcr = np.array([r["dcr_share"] for r in runs])
    mia = np.array([r["mia_auc"] for r in runs])
    return {"dcr_mean": float(dcr.mean()), "dcr_sd": float(dcr.std(ddof=1)),
            "mia_mean": float(mia.mean()), "mia_sd": float(mia.std(ddof=1))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/adult"))
    parser.add_argument("--epsilon", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--holdout-share", type=float, default=0.1)
    parser.add_argument("--keep", type=Path, default=None,
                        help="copy the report, the evaluation and syn.csv into this folder")
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[],
                        help="extra arguments for synthgen run")
    args = parser.parse_args()

    import jsonschema

    from synthgen.report import evaluation_path, render_evaluation_html, render_html

    train = load_adult(args.data / "adult.data")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        plain, out, rep = folder / "adult.csv", folder / "syn.csv", folder / "report.json"
        train.to_csv(plain, index=False)
        t0 = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "synthgen", "run", str(plain), "--epsilon", str(args.epsilon),
             "--out", str(out), "--report", str(rep), "--seed", str(args.seed), "--target", "Y",
             "--holdout-share", str(args.holdout_share), "--quiet", *args.extra],
            check=True,
        )
        run_seconds = time.perf_counter() - t0
        report = json.loads(rep.read_text(encoding="utf-8"))
        evaluation = json.loads(evaluation_path(rep).read_text(encoding="utf-8"))
        schema = json.loads((ROOT / "docs" / "report.schema.json").read_text(encoding="utf-8"))
        errors = [e.message for e in jsonschema.Draft202012Validator(schema).iter_errors(report)]
        owner_schema = {**schema["$defs"]["evaluation"], "$defs": schema["$defs"]}
        errors += [e.message for e in
                   jsonschema.Draft202012Validator(owner_schema).iter_errors(evaluation)]

        def render_both() -> None:
            render_html(report)
            render_evaluation_html(evaluation)

        t0 = time.perf_counter()
        render_both()
        cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        render_both()
        warm = time.perf_counter() - t0
        browser = chromium_seconds(folder / "evaluation.html", folder / "chromium-profile")
        spread = reference_spread(plain, out, args)
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            for name in ("report.json", "report.html", "evaluation.json", "evaluation.html",
                         "syn.csv"):
                shutil.copy(folder / name, args.keep / name)

    audit, quality, utility = evaluation["audit"], evaluation["quality"], evaluation["utility"]
    rows = [
        ("epsilon spent / target", f"{report['epsilon']:.4f} / {report['target_epsilon']:g}", ""),
        ("training rows / holdout rows", f"{report['rows']} / {audit['holdout_rows']}", ""),
        ("DCR share", f"{audit['dcr_share']:.4f}", "0.45-0.55"),
        ("NNDR median: training / holdout", f"{audit['nndr']:.4f} / {audit['nndr_holdout']:.4f}",
         "equal"),
        ("MIA AUC (standard error)", f"{audit['mia_auc']:.4f} ({audit['mia_auc_se']:.4f})",
         "<= 0.55"),
        ("exact-match rate / real reference",
         f"{audit['exact_match_rate']:.5f} / {audit['exact_match_reference']:.5f}",
         "rate <= reference"),
        ("DCR share, 5 other reference draws: mean (sd)",
         f"{spread['dcr_mean']:.4f} ({spread['dcr_sd']:.4f})", ""),
        ("MIA AUC, 5 other reference draws: mean (sd)",
         f"{spread['mia_mean']:.4f} ({spread['mia_sd']:.4f})", ""),
        ("checks passed", " ".join(f"{c['metric']}={c['passed']}" for c in audit["checks"]), ""),
        ("quality score (shapes / pair trends)",
         f"{quality['score']:.4f} ({quality['column_shapes']:.4f} / "
         f"{quality['column_pair_trends']:.4f})", ""),
        ("TSTR ROC AUC on holdout: synthetic / real",
         f"{utility['synthetic_score']:.4f} / {utility['real_score']:.4f}", ""),
        ("audit seconds (inside the run)", f"{audit['seconds']:.2f}", "a few"),
        ("evaluation seconds (quality + utility + audit)",
         f"{evaluation['seconds']:.2f}", ""),
        ("render both pages, seconds: cold / warm", f"{cold:.2f} / {warm:.2f}", "< 2"),
        ("Chromium load seconds (start to DOM dump)",
         "no chromium" if browser is None else f"{browser:.2f}", "< 2"),
        ("schema errors", str(len(errors)), "0"),
        ("whole run seconds", f"{run_seconds:.1f}", ""),
    ]
    width = max(len(r[0]) for r in rows)
    for name, value, bar in rows:
        print(f"{name:<{width}}  {value:<32} {bar}")
    print(json.dumps({
        "epsilon": report["epsilon"], "audit": {k: audit[k] for k in (
            "dcr_share", "nndr", "nndr_holdout", "mia_auc", "mia_auc_se", "exact_match_rate",
            "exact_match_reference", "holdout_rows", "reference_rows", "synthetic_rows",
            "seconds")},
        "quality": quality["score"], "tstr_auc": utility["synthetic_score"],
        "real_auc": utility["real_score"], "render_cold_s": cold, "render_warm_s": warm,
        "chromium_s": browser, "schema_errors": errors, "run_s": run_seconds,
        "reference_spread": spread,
    }))


if __name__ == "__main__":
    main()
