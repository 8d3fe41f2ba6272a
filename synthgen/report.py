"""The privacy-budget report of one fit: a JSON-ready dict, and its HTML rendering.

The JSON layout is versioned (``report_schema_version``) and described by
``docs/report.schema.json`` (JSON Schema 2020-12) and ``docs/report.md``. The report is public:
built from the ledger and other DP outputs only (what was spent, on what, how it composes, the
released domains), safe to hand over with the synthetic table. What is computed on real rows
(quality, utility, audit, the holdout split) is a separate, owner-only document, the
*evaluation* (:func:`build_evaluation`, written as ``evaluation.json`` / ``evaluation.html``),
never merged into the report.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import opacus

from synthgen._version import __version__
from synthgen.privacy.accountant import epsilon_of
from synthgen.report_html import html_path

if TYPE_CHECKING:
    from synthgen.privacy.domains import ColumnDomain
    from synthgen.privacy.ledger import PrivacyLedger

REPORT_SCHEMA_VERSION = 3
EVALUATION_SCHEMA_VERSION = 1
# The sections of the owner-only evaluation; none of them may appear in a public report.
OWNER_ONLY_SECTIONS = ("holdout", "quality", "utility", "audit")
HEURISTICS_NOTE = (
    "The distance-to-closest-record (DCR) and membership-inference (MIA) scores are heuristics: "
    "an attack that fails here shows no gross leak (copied rows, memorisation), and is not "
    "evidence of differential privacy. The guarantee rests on the ledger and the accountant in "
    "the public report."
)
# Points of the epsilon-vs-steps curve computed with the ledger's accountant (PRV costs about
# 0.1-1.5 s a point, growing with the steps); RDP, cheap, is computed at the same points.
CURVE_POINTS = 8

GUARANTEE = (
    "The synthetic table and the model are ({epsilon:.3g}, {delta:.2g})-differentially private "
    "with respect to adding or removing one row of the training table: every read of the table "
    "(listed in the ledger) is a Gaussian mechanism, and their composition, computed by the "
    "{accountant} accountant, is the epsilon above. Not protected: facts declared public - column "
    "names, their formats and kinds, and any bounds or category lists in a user schema. The "
    "number of rows is not public: the report and the default output size use a DP estimate "
    "of it. A person with several rows is protected as several rows (group privacy)."
)

SECURE_MODE_NOTE = (
    "Noise is drawn from PyTorch's and NumPy's default generators, not a CSPRNG: Opacus's "
    "secure_mode needs torchcsprng, which has no release for current PyTorch. Unless the run was "
    "given a seed, the generators are seeded from the operating system's entropy (os.urandom / "
    "secrets), never from anything published. The accepted risk is floating-point and "
    "generator-state attacks on the noise."
)
SEEDED_NOTE = (
    "Seeded: keep the seed secret. This run was given a seed for reproducibility, and every "
    "noise draw (histograms, marginals, DP-SGD, the holdout split) came from generators seeded "
    "by it: anyone who knows the seed can regenerate the noise and subtract it from the "
    "releases, which voids the guarantee. Like a key, the seed is stored in no output (this "
    "report, the model, the job resource)."
)


EXPLANATION_MEANS = (
    "Whatever anyone can learn from the synthetic table or the model, they could have learned "
    "almost as well if any one row had been left out of the training table. Precisely: for any "
    "row, and any question asked of the output, the chance of each answer changes by at most a "
    "factor of e^epsilon (here {factor:.3g}) when that row is added or removed, except with "
    "probability delta ({delta:.2g}). That holds whatever else the asker knows."
)

EXPLANATION_DOES_NOT_MEAN = (
    "It does not hide what was declared public: column names, their kinds and formats, and any "
    "category lists or bounds in the public schema.",
    "It does not hide patterns of the population, which is what the synthetic table is for: if "
    "most nurses in the table are women, the synthetic table says so, and that can be used to "
    "guess about a nurse who was never in the table.",
    "It protects rows, not people: a person with k rows in the table is protected as k rows "
    "(roughly k times epsilon).",
    "It covers this job only. Every job on the same data spends more of the data's budget; "
    "the total across jobs is tracked by the service, not by this report.",
    "This report holds only DP outputs and public facts. The quality, utility and audit figures "
    "are computed on the real data without noise and live in a separate owner-only evaluation "
    "(evaluation.json): do not publish it with the synthetic table.",
    "The audit's DCR and membership-inference figures are heuristics, not evidence of DP: "
    "passing them shows no gross leak, and the guarantee above rests on the ledger and the "
    "accountant.",
)


def explanation(epsilon: float, delta: float) -> dict[str, Any]:
    return {
        "means": EXPLANATION_MEANS.format(factor=float(np.exp(epsilon)), delta=delta),
        "does_not_mean": list(EXPLANATION_DOES_NOT_MEAN),
    }


def composition(ledger: PrivacyLedger, spent: float) -> dict[str, Any]:
    """How the ledger's entries make the spent epsilon (composed, never summed)."""
    return {
        "method": (
            f"The entries form one history of (subsampled) Gaussian mechanisms, composed by "
            f"Opacus's {ledger.accountant.upper()} accountant at delta = accountant_delta. "
            "Each entry's own epsilon is for reading only: composing is tighter than adding "
            "them. Extra delta (releasing category keys above a noisy threshold) adds to delta."
        ),
        "history": [list(h) for h in ledger.history()],
        "sum_of_entry_epsilons": float(sum(e.epsilon for e in ledger.entries)),
        "epsilon": spent,
        "accountant_delta": ledger.accountant_delta,
        "extra_delta": float(sum(e.extra_delta for e in ledger.entries)),
        "delta": ledger.delta(),
        "phases": phases(ledger, spent),
    }


# The ledger's mechanisms in the order a fit runs them, by phase: what a reader sees as the
# epsilon at step 0 of the curve is the first two phases composed.
PHASES = (
    ("preprocessing", "Sizing the table and releasing its domains (row count, cell formats, "
     "category sets, numeric ranges, null rates)", ("gaussian_row_count",
                                                    "gaussian_format_votes",
                                                    "gaussian_histograms")),
    ("marginals", "Measuring the column tables the generator learns to match (one-way tables, "
     "which pairs to measure, two-way tables)", ("gaussian_one_way_marginals",
                                                 "gaussian_pair_selection",
                                                 "gaussian_two_way_marginals")),
    ("training", "Training the GAN with DP-SGD (the discriminator's noisy steps)",
     ("dp_sgd",)),
)


def phases(ledger: PrivacyLedger, spent: float) -> list[dict[str, Any]]:
    """The budget by phase, in the order spent: each phase's mechanisms and the epsilon composed
    over everything up to and including it (the last is the reported epsilon). Composed
    figures, not sums: each phase adds less than its entries' epsilons alone."""
    history = ledger.history()
    entries = ledger.entries
    out: list[dict[str, Any]] = []
    for name, what, mechanisms in PHASES:
        upto = [i for i, e in enumerate(entries) if e.mechanism in mechanisms]
        if not upto:
            continue
        last = max(upto)
        prefix = history[: last + 1]
        composed = spent if last == len(entries) - 1 else epsilon_of(
            prefix, ledger.accountant_delta, ledger.accountant)
        out.append({"phase": name, "what": what,
                    "mechanisms": [entries[i].mechanism for i in upto],
                    "epsilon_after": float(composed)})
    return out


def named_ledger(ledger: PrivacyLedger, domains: list[ColumnDomain]) -> list[dict[str, Any]]:
    """The ledger's entries as the report lists them: where an entry's parameters name column
    pairs by position among the learned columns (``pairs``), ``pair_columns`` names them."""
    learned = [d.name for d in domains if d.kind.value != "drop"]
    entries = ledger.to_dict()["entries"]
    for entry in entries:
        pairs = (entry.get("params") or {}).get("pairs")
        if pairs and all(0 <= i < len(learned) for pair in pairs for i in pair):
            entry["params"]["pair_columns"] = [[learned[i] for i in pair] for pair in pairs]
    return list(entries)


def epsilon_curve(
    ledger: PrivacyLedger, spent: float | None = None, points: int = CURVE_POINTS
) -> dict[str, Any]:
    """Epsilon spent after each number of DP-SGD steps, everything before training included.

    ``spent`` (the ledger's composed epsilon, if already known) saves the last point's call."""
    sgd = [i for i, e in enumerate(ledger.entries) if e.mechanism == "dp_sgd"]
    curve: dict[str, Any] = {"accountant": ledger.accountant, "delta": ledger.accountant_delta,
                             "points": []}
    if not sgd:
        return curve
    entry = ledger.entries[sgd[-1]]
    history = ledger.history()
    prior = [h for i, h in enumerate(history) if i != sgd[-1]]
    sigma, q = entry.noise_multiplier, entry.sampling_rate
    last = sgd[-1] == len(history) - 1
    for step in sorted({int(s) for s in np.linspace(0, entry.steps, points + 1).round()}):
        mechanisms = [*prior, (sigma, q, step)]
        known = spent is not None and last and step == entry.steps
        curve["points"].append({
            "step": step,
            "epoch": step * q,
            "epsilon": spent if known else epsilon_of(mechanisms, ledger.accountant_delta,
                                                      ledger.accountant),
            "epsilon_rdp": epsilon_of(mechanisms, ledger.accountant_delta, "rdp"),
        })
    curve["planned_steps"] = int(entry.params.get("planned_steps", entry.steps))
    return curve


class FittedModel(Protocol):
    """What a report reads of a fitted :class:`~synthgen.synthesizer.Synthesizer` (which
    imports this module: the report depends on this shape, not on the class)."""

    @property
    def ledger(self) -> PrivacyLedger | None: ...

    @property
    def info(self) -> dict[str, Any]: ...

    @property
    def domains(self) -> list[ColumnDomain]: ...


def build_report(synth: FittedModel) -> dict[str, Any]:
    ledger = synth.ledger
    if ledger is None:
        raise RuntimeError("fit the synthesizer first")
    info = synth.info
    spent = float(info.get("epsilon", ledger.epsilon()))
    delta = ledger.delta()
    return {
        "report_schema_version": REPORT_SCHEMA_VERSION,
        "dp": True,
        "synthgen_version": __version__,
        "opacus_version": opacus.__version__,
        "target_epsilon": ledger.target_epsilon,
        "epsilon": spent,
        "target_delta": ledger.target_delta,
        "delta": delta,
        "accountant": ledger.accountant,
        "accountant_delta": ledger.accountant_delta,
        "privacy_unit": "one row (add/remove neighbours)",
        "guarantee": GUARANTEE.format(epsilon=spent, delta=delta, accountant=ledger.accountant),
        "secure_mode": {"enabled": False, "seeded": bool(info.get("seeded", False)),
                        "note": SEEDED_NOTE if info.get("seeded") else SECURE_MODE_NOTE},
        "ledger": named_ledger(ledger, synth.domains),
        "rows": info.get("rows"),
        "columns": [
            {"name": d.name, "kind": d.kind.value, "source": d.source, "note": d.note}
            for d in synth.domains
        ],
        "completed": info.get("completed", True),
        "training": info.get("training", {}),
        "device": info.get("device"),
        "warnings": info.get("warnings", []),
        "explanation": explanation(spent, delta),
        "composition": composition(ledger, spent),
        "epsilon_curve": epsilon_curve(ledger, spent),
        **({"sampling": sampling} if (sampling := getattr(synth, "sampling", None)) else {}),
        **_schema_used(synth),
    }


def _schema_used(synth: FittedModel) -> dict[str, Any]:
    """The report's ``schema``: the schema the run used, completed with what it released (DP
    outputs and declarations only), as a schema file holds it."""
    used = getattr(synth, "schema_used", None)
    if used is None or not synth.domains:
        return {}
    from synthgen.schema import schema_document

    return {"schema": schema_document(used())}


def run_header(input_name: str, *, command: str | None = None,
               job_id: str | None = None) -> dict[str, Any]:
    """The report's ``run`` section: which file, when, and how (the command, or the service's
    job id). Shown in the HTML's header, so a saved report says what it is about."""
    from datetime import UTC, datetime

    return {"input": input_name, "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "command": command, "job_id": job_id}


SECRET_OPTIONS = ("--seed",)


def public_command(argv: list[str]) -> list[str]:
    """``argv`` without the options that are secrets (``--seed N`` / ``--seed=N``): a seed
    regenerates the run's noise, so it never goes into a published command line."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        name = arg.split("=", 1)[0]
        if name in SECRET_OPTIONS:
            skip = "=" not in arg
            continue
        out.append(arg)
    return out


def jsonable(value: Any) -> Any:
    """``value`` with numpy scalars made plain and NaN/infinity made ``null``: strict JSON, which
    is what JSON Schema validators and browsers' ``JSON.parse`` accept."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def build_evaluation(
    report: dict[str, Any], evaluation: dict[str, Any], holdout: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The owner-only evaluation document: :func:`synthgen.evaluate.evaluate`'s sections and the
    holdout split they used, each marked ``owner_only`` in the JSON itself. ``report`` (the
    public one, left unchanged) gives the figures the evaluation refers to."""
    doc: dict[str, Any] = {
        "evaluation_schema_version": EVALUATION_SCHEMA_VERSION,
        "owner_only": True,
        "notice": evaluation.get("notice", ""),
        "heuristics": HEURISTICS_NOTE,
        "job": {k: report.get(k) for k in ("synthgen_version", "dp", "target_epsilon",
                                           "epsilon", "delta", "rows", "output_rows")},
        "holdout": holdout,
        "skipped": evaluation.get("skipped", {}),
    }
    if "seconds" in evaluation:
        doc["seconds"] = evaluation["seconds"]
    if "compared_with" in evaluation:  # conditioned output: the real rows meeting the same
        doc["compared_with"] = evaluation["compared_with"]
    for section in ("quality", "utility", "audit"):
        if section in evaluation:
            doc[section] = {"owner_only": True, **evaluation[section]}
    return dict(jsonable(doc))


def render_html(report: dict[str, Any], budget: dict[str, Any] | None = None) -> str:
    """The report as one self-contained HTML page (inline CSS and SVG plots, no scripts, no
    network fetches). ``budget``, from the service, describes the dataset's budget across jobs."""
    from synthgen.report_html import render

    return render(report, budget)


def render_evaluation_html(evaluation: dict[str, Any]) -> str:
    """The owner-only evaluation as one self-contained HTML page."""
    from synthgen.report_html import render_evaluation

    return render_evaluation(evaluation)


def _write_pair(doc: dict[str, Any], path: Path, page: str) -> Path:
    text = json.dumps(jsonable(doc), indent=2, default=str, allow_nan=False)
    path.write_text(text, encoding="utf-8")
    html = html_path(path)
    html.write_text(page, encoding="utf-8")
    return html


def write_report(report: dict[str, Any], path: str | Path,
                 budget: dict[str, Any] | None = None) -> Path:
    """Write ``report`` as JSON at ``path`` and as HTML beside it (same name, ``.html``);
    returns the HTML path."""
    check_public(report)
    return _write_pair(report, Path(path), render_html(report, budget))


def check_public(report: dict[str, Any]) -> None:
    """Refuse to publish a report that carries a section computed on real rows."""
    leaked = [k for k in (*OWNER_ONLY_SECTIONS, "evaluation") if k in report]
    if leaked:
        raise ValueError(f"owner-only sections {leaked} in a public report")


def evaluation_path(report_path: str | Path) -> Path:
    """Where the owner-only evaluation goes beside a report: ``evaluation.json`` beside
    ``report.json`` (a name holding "report" has it replaced), else ``<name>-evaluation``."""
    path = Path(report_path)
    stem = (path.stem.replace("report", "evaluation") if "report" in path.stem
            else f"{path.stem}-evaluation")
    return path.with_name(stem + (path.suffix or ".json"))


def write_evaluation(evaluation: dict[str, Any], path: str | Path) -> Path:
    """Write the owner-only evaluation as JSON at ``path`` and HTML beside it; returns the HTML
    path."""
    return _write_pair(evaluation, Path(path), render_evaluation_html(evaluation))
