"""A report as one self-contained HTML page.

Self-contained means: inline CSS, plots as inline SVG (matplotlib), no script, no font, no image
or style sheet fetched from anywhere; a Content-Security-Policy meta tag forbids fetches, so a
browser would refuse one even if a value slipped through. Every value from the report (column
names and category labels come from the user's data) is HTML-escaped, and matplotlib's math
parsing is off, so a label such as "$50K" is drawn as written.

The page renders from the JSON alone: the API stores ``report.json`` (and the owner-only
``evaluation.json``) and calls :func:`synthgen.report.render_html` (or
:func:`synthgen.report.render_evaluation_html`) on it later.
"""

from __future__ import annotations

import html
import io
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

_CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
        "base-uri 'none'; form-action 'none'")
_REAL, _SYN, _ACCENT, _MUTED = "#3a6ea5", "#e07b39", "#2f8f5b", "#888888"
_TRAINING_KEYS = (
    ("steps", "DP-SGD steps run"),
    ("planned_steps", "steps planned"),
    ("epochs", "epochs"),
    ("expected_batch_size", "expected batch size (real rows a step)"),
    ("sampling_rate", "sampling rate q (Poisson)"),
    ("noise_multiplier", "noise multiplier (std / clipping norm)"),
    ("max_grad_norm", "per-row clipping norm"),
)

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d1d1f;
 max-width:1100px;margin:0 auto;padding:24px;background:#fff}
h1{font-size:24px;margin:0 0 4px}h2{font-size:19px;margin:32px 0 8px;border-bottom:1px solid #ddd;
 padding-bottom:4px}h3{font-size:15px;margin:20px 0 6px}
.sub{color:#555;margin:0 0 16px}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:12px 0}
.card{border:1px solid #ddd;border-radius:8px;padding:10px 14px;min-width:150px}
.card b{display:block;font-size:20px}.card span{color:#555;font-size:12px}
table{border-collapse:collapse;margin:8px 0;font-size:13px}
th,td{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f5f5f7}td.n{text-align:right;font-variant-numeric:tabular-nums}
.badge{display:inline-block;padding:2px 10px;border-radius:12px;font-weight:600;font-size:13px}
.ok{background:#e3f4e9;color:#1f6b3e}.bad{background:#fde8e8;color:#9b1c1c}
.warn{background:#fff6db;color:#7a5a00}
.banner{border-radius:8px;padding:12px 16px;margin:16px 0;font-weight:600}
.banner.bad{border:2px solid #c53030}.banner.warn{border:1px solid #e0b400}
.owner{border:2px dashed #c77700;border-radius:10px;padding:4px 18px 16px;margin-top:32px;
 background:#fffcf5}
figure{margin:8px 0}figure svg{max-width:100%;height:auto}
figcaption{color:#555;font-size:12px}
code{background:#f5f5f7;padding:0 3px;border-radius:3px}
ul{margin:4px 0 8px 20px;padding:0}
footer{margin-top:32px;color:#777;font-size:12px}
"""


def html_path(path: str | Path) -> Path:
    """Where a report written at ``path`` (JSON) has its HTML: same name, ``.html``. Here,
    not in :mod:`synthgen.report`, so that the CLI checks it before importing anything heavy."""
    path = Path(path)
    return path.with_suffix(".html") if path.suffix.lower() != ".html" else (
        path.with_name(path.name + ".html"))


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _num(value: Any, fmt: str = ".4g") -> str:
    if value is None:
        return "&mdash;"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            return _e(value)
        return _e(format(value, fmt))
    return _e(value)


def _table(header: Sequence[str], rows: Iterable[Sequence[str]],
           numeric: frozenset[int] | set[int] = frozenset()) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(
            f'<td class="n">{c}</td>' if i in numeric else f"<td>{c}</td>"
            for i, c in enumerate(row)) + "</tr>"
        for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _badge(passed: bool | None, yes: str = "pass", no: str = "fail") -> str:
    if passed is None:
        return '<span class="badge warn">n/a</span>'
    return f'<span class="badge {"ok" if passed else "bad"}">{_e(yes if passed else no)}</span>'


# ----------------------------------------------------------------------------- plots


class _Plots:
    """Figures to inline SVG; one matplotlib import and style for the whole page."""

    _PARAMS: dict[str, Any] = {
        "svg.fonttype": "none",  # text stays text: small, selectable, no embedded fonts
        "text.parse_math": False,  # "$" in a label is a dollar sign
        "font.size": 9,
        "axes.spines.top": False,
        "axes.spines.right": False,
    }

    def __init__(self) -> None:
        from matplotlib.figure import Figure

        self._figure = Figure
        self._count = 0

    def styled(self, **extra: Any) -> Any:
        import matplotlib

        params: Any = {**self._PARAMS, **extra}
        return matplotlib.rc_context(params)

    def new(self, width: float, height: float) -> Any:
        return self._figure(figsize=(width, height), layout="tight")

    def svg(self, fig: Any, caption: str) -> str:
        self._count += 1
        buf = io.StringIO()
        # A salt per figure keeps the clip-path ids of two inline SVGs on one page apart.
        with self.styled(**{"svg.hashsalt": f"synthgen-{self._count}"}):
            fig.savefig(buf, format="svg", metadata={"Date": None})
        text = buf.getvalue()
        text = text[text.index("<svg"):]
        return (f'<figure role="img" aria-label="{_e(caption)}">{text}'
                f"<figcaption>{_e(caption)}</figcaption></figure>")


def _short(label: str, width: int = 22) -> str:
    return label if len(label) <= width else label[: width - 1] + "\u2026"


def _epsilon_plot(plots: _Plots, report: dict[str, Any]) -> str:
    curve = report.get("epsilon_curve") or {}
    points = curve.get("points") or []
    if not points:
        return "<p>No DP-SGD steps were taken.</p>"
    with plots.styled():
        fig = plots.new(7.0, 3.0)
        ax = fig.add_subplot()
        steps = [p["step"] for p in points]
        ax.plot(steps, [p["epsilon"] for p in points], marker="o", color=_REAL,
                label=f"epsilon ({str(curve.get('accountant', '')).upper()}, reported)")
        if curve.get("accountant") != "rdp":
            ax.plot(steps, [p["epsilon_rdp"] for p in points], linestyle="--", color=_MUTED,
                    label="RDP (an upper bound)")
        target = report.get("target_epsilon")
        if target is not None:
            ax.axhline(target, color="#c53030", linewidth=1, label=f"target {target:g}")
        ax.set_xlabel("DP-SGD steps")
        start = points[0]
        if start["step"] == 0 and start["epsilon"] > 0:
            ax.annotate(f"{start['epsilon']:.3g} at step 0: spent before training\n"
                        "(preprocessing and marginal tables)",
                        (0, start["epsilon"]), xytext=(12, -28), textcoords="offset points",
                        fontsize=8, color="#444444",
                        arrowprops={"arrowstyle": "->", "color": "#888888"})
        ax.set_ylabel("epsilon spent")
        ax.set_ylim(bottom=0)
        ax.legend(loc="lower right", frameon=False)
        ax.grid(alpha=0.3)
    return plots.svg(fig, "Epsilon spent as training proceeds, all mechanisms composed: the "
                          "curve starts above 0 because preprocessing and the marginal tables "
                          "are spent before the first step")


def _shape_plot(plots: _Plots, quality: dict[str, Any]) -> str:
    columns = [c for c in quality.get("columns", []) if c.get("score") is not None]
    if not columns:
        return ""
    columns.sort(key=lambda c: c["score"])
    with plots.styled():
        fig = plots.new(7.0, 0.9 + 0.22 * len(columns))
        ax = fig.add_subplot()
        y = range(len(columns))
        ax.barh(list(y), [c["score"] for c in columns], color=_REAL)
        ax.set_yticks(list(y), [_short(c["column"]) for c in columns])
        ax.set_xlim(0, 1)
        ax.set_xlabel("column shape score (1 = same distribution)")
        ax.grid(axis="x", alpha=0.3)
    return plots.svg(fig, "Column shapes: per-column similarity of real and synthetic")


def _distribution_plot(plots: _Plots, distributions: list[dict[str, Any]]) -> str:
    if not distributions:
        return ""
    from matplotlib.ticker import MaxNLocator

    cols = 2 if len(distributions) > 1 else 1
    rows = math.ceil(len(distributions) / cols)
    with plots.styled():
        fig = plots.new(7.6, 2.9 * rows)
        for k, dist in enumerate(distributions):
            ax = fig.add_subplot(rows, cols, k + 1)
            real, syn = dist["real"], dist["synthetic"]
            if "edges" in dist:
                edges = dist["edges"]
                centres = [(a + b) / 2 for a, b in zip(edges[:-1], edges[1:], strict=True)]
                width = (edges[1] - edges[0]) * 0.42 if len(edges) > 1 else 1.0
                ax.bar([c - width / 2 for c in centres], real, width=width, color=_REAL,
                       label="real")
                ax.bar([c + width / 2 for c in centres], syn, width=width, color=_SYN,
                       label="synthetic")
                ax.xaxis.set_major_locator(MaxNLocator(nbins=4))
                ax.set_xlabel("value")
            else:
                y = list(range(len(dist["labels"])))
                ax.barh([i - 0.2 for i in y], real, height=0.4, color=_REAL, label="real")
                ax.barh([i + 0.2 for i in y], syn, height=0.4, color=_SYN, label="synthetic")
                ax.set_yticks(y, [_short(str(v), 18) for v in dist["labels"]])
                ax.invert_yaxis()
                ax.set_xlabel("share of rows")
            ax.set_title(_short(str(dist["column"]), 40), fontsize=10)
            if k == 0:
                ax.legend(frameon=False, fontsize=8)
    return plots.svg(fig, "Real and synthetic distributions of the columns with the lowest "
                          "shape scores (numerical: the central 99% of the real values, the "
                          "rest counted in the end bins)")


def _dcr_plot(plots: _Plots, audit: dict[str, Any]) -> str:
    quantiles = audit.get("dcr_quantiles")
    if not quantiles:
        return ""
    with plots.styled():
        fig = plots.new(7.0, 2.8)
        ax = fig.add_subplot()
        ax.plot(quantiles["q"], quantiles["train"], color=_SYN, marker=".",
                label="synthetic row to nearest training row")
        ax.plot(quantiles["q"], quantiles["holdout"], color=_REAL, marker=".", linestyle="--",
                label="synthetic row to nearest holdout row")
        ax.set_xlabel("quantile over synthetic rows")
        ax.set_ylabel("distance to closest record")
        ax.legend(frameon=False)
        ax.grid(alpha=0.3)
    return plots.svg(fig, "Distances to closest record: a training curve below the holdout "
                          "curve would mean synthetic rows sit closer to training rows")


# ----------------------------------------------------------------------------- sections


def _header(report: dict[str, Any]) -> str:
    if report.get("dp") is False:
        return ('<h1>Synthetic data report</h1><div class="banner bad">'
                f'{_e(report.get("warning") or "NOT DIFFERENTIALLY PRIVATE")}</div>')
    spent, target = report.get("epsilon"), report.get("target_epsilon")
    within = spent is not None and target is not None and spent <= target + 1e-9
    share = f" ({100 * spent / target:.1f}% of the target)" if spent and target else ""
    cards = [
        (f"{_num(spent, '.4g')} / {_num(target, 'g')}", "epsilon spent / target" + share),
        (f"{_num(report.get('delta'), '.2g')} / {_num(report.get('target_delta'), '.2g')}",
         "delta spent / target"),
        (_e(str(report.get("accountant", "")).upper()), "accountant (Opacus "
         f"{_e(report.get('opacus_version', '?'))})"),
        (_num(report.get("rows"), ","), "training rows (a DP estimate: the exact count is "
         "private)"),
        (_num(report.get("output_rows"), ","), "synthetic rows written"),
    ]
    cards_html = "".join(f'<div class="card"><b>{v}</b><span>{label}</span></div>'
                         for v, label in cards)
    status = _badge(within, "within budget", "OVER BUDGET")
    if report.get("completed") is False:
        status += ' <span class="badge warn">stopped early (cancelled)</span>'
    return (f"<h1>Privacy report</h1>{_run_line(report.get('run'))}"
            f"<p class=\"sub\">Differentially private synthetic table, "
            f"privacy unit: {_e(report.get('privacy_unit', 'one row'))}. {status}</p>"
            f'<div class="cards">{cards_html}</div>')


def _run_line(run: dict[str, Any] | None) -> str:
    """Which input, when, and how: a saved report says what it is about."""
    if not run:
        return ""
    parts = [f"Input <b>{_e(run.get('input'))}</b>",
             f"finished {_e(str(run.get('finished_at', '')).replace('T', ' '))}"]
    if run.get("command"):
        parts.append(f"<code>{_e(run['command'])}</code>")
    if run.get("job_id"):
        parts.append(f"job <code>{_e(run['job_id'])}</code>")
    return f'<p class="sub">{" &middot; ".join(parts)}</p>'


def utility_verdict(u: dict[str, Any]) -> str | None:
    """A sentence on what the train-on-synthetic score means, next to the real data's."""
    syn, real = u.get("synthetic_score"), u.get("real_score")
    if not isinstance(syn, int | float) or not isinstance(real, int | float):
        return None
    if u.get("metric") == "roc_auc":
        if syn <= 0.55:
            return (f"Weak: a ROC AUC of {syn:.2f} is about chance (0.5). A model trained on "
                    "this synthetic table does not learn to predict the target; on a small "
                    "table or at a small epsilon the noise drowns the relation. More rows, a "
                    "larger epsilon or a declared schema (which frees budget) may help.")
        gap = real - syn
        if gap > 0.1:
            return (f"Partial: {syn:.2f} against {real:.2f} on real data. The synthetic table "
                    "keeps part of the relation to the target; expect weaker models from it.")
        return (f"Good: {syn:.2f} against {real:.2f} on real data. Models trained on the "
                "synthetic table predict the target almost as well.")
    if syn <= 0:
        return (f"Weak: an R\u00b2 of {syn:.2f} is no better than predicting the mean. The "
                "synthetic table does not keep this target's relation to the other columns.")
    return None


def _meaning(report: dict[str, Any]) -> str:
    exp = report.get("explanation") or {}
    items = "".join(f"<li>{_e(x)}</li>" for x in exp.get("does_not_mean", []))
    split = report.get("split") or {}
    return ("<h2>What the guarantee means</h2>"
            f"<p>{_e(exp.get('means', ''))}</p><p>{_e(report.get('guarantee', ''))}</p>"
            + (f"<p>{_e(split.get('note', ''))}</p>" if split else "")
            + f"<h3>What it does not mean</h3><ul>{items}</ul>")


def _budget(budget: dict[str, Any] | None) -> str:
    if not budget:
        return ""
    rows = []
    jobs = budget.get("jobs")
    for key, value in budget.items():
        if key == "jobs":
            continue
        rows.append((_e(key.replace("_", " ")),
                     _num(value) if isinstance(value, int | float) else _e(value)))
    out = "<h2>The dataset's budget across jobs</h2>" + _table(("", "value"), rows)
    if isinstance(jobs, list) and jobs:
        keys = list(dict.fromkeys(k for j in jobs if isinstance(j, dict) for k in j))

        def cell(value: Any) -> str:
            return _num(value) if value is None or isinstance(value, int | float) else _e(value)

        out += _table([k.replace("_", " ") for k in keys],
                      ([cell(j.get(k)) for k in keys] for j in jobs if isinstance(j, dict)))
    return out + ("<p>Every job on the same data spends from this one budget; the service "
                  "composes the jobs' charges (figures from the service, not from this job's "
                  "ledger).</p>")


def _param(key: str, value: Any) -> str:
    if key == "pair_columns" and isinstance(value, list):
        return (f"column pairs ({len(value)}): "
                + ", ".join(" \u00d7 ".join(_e(c) for c in pair) for pair in value))
    shown = _num(value) if isinstance(value, int | float) else _e(value)
    return f"{_e(key)} = {shown}"


def _params(params: dict[str, Any]) -> str:
    """An entry's parameters; column pairs by name (``pair_columns``), not by position."""
    named = "pair_columns" in params
    return "; ".join(_param(k, v) for k, v in params.items() if not (named and k == "pairs"))


def _phases(comp: dict[str, Any]) -> str:
    phases = comp.get("phases") or []
    if not phases:
        return ""
    rows = [(f"{i}. {_e(p['phase'])}", _e(p.get("what", "")),
             ", ".join(f"<code>{_e(m)}</code>" for m in p.get("mechanisms", [])),
             _num(p.get("epsilon_after"), ".4g")) for i, p in enumerate(phases, 1)]
    before = [p for p in phases if p["phase"] != "training"]
    lead = (f"The budget is spent in {len(phases)} phases, in this order. "
            + (f"The first {'two' if len(before) == 2 else 'one'} read the table before the "
               "first training step: that is why the curve of epsilon over training starts at "
               f"{_num(before[-1]['epsilon_after'], '.3g')} at step 0, not at 0. "
               if before and len(before) < len(phases) else "")
            + "Each figure is everything up to that phase composed, so the last is the "
              "epsilon the guarantee states.")
    return (f"<p>{_e(lead)}</p>" + _table(("phase", "what it did", "mechanisms (ledger below)",
                                            "epsilon spent by the end of it"), rows, {3}))


def _ledger(report: dict[str, Any]) -> str:
    rows = []
    for e in report.get("ledger", []):
        rows.append((f"<code>{_e(e.get('mechanism'))}</code>", _e(e.get("reads", "")),
                     _num(e.get("noise_multiplier")), _num(e.get("sampling_rate")),
                     _num(e.get("steps"), ","), _num(e.get("epsilon")),
                     _num(e.get("extra_delta"), ".2g"), _params(e.get("params") or {})))
    comp = report.get("composition") or {}
    out = "<h2>Where the budget went</h2>" + _phases(comp)
    out += "<h3>Every mechanism that read the table</h3>" + _table(
        ("mechanism", "what it read", "noise multiplier", "sampling rate", "steps",
         "epsilon if it were alone", "extra delta", "parameters"), rows, {2, 3, 4, 5, 6})
    if comp:
        out += (f"<p><b>Why the column of epsilons does not add up to the total.</b> Each "
                "entry's epsilon is what that mechanism would cost if it were the only one "
                "(for reading). Privacy loss composes more tightly than a sum: the accountant "
                f"composes all of them into epsilon = <b>{_num(comp.get('epsilon'))}</b>, "
                f"where adding the column would claim "
                f"{_num(comp.get('sum_of_entry_epsilons'))}. The composed figure is the "
                "guarantee.</p>"
                f"<p>{_e(comp.get('method', ''))} Composed at delta = "
                f"{_num(comp.get('accountant_delta'), '.2g')} plus extra delta "
                f"{_num(comp.get('extra_delta'), '.2g')} (total delta "
                f"{_num(comp.get('delta'), '.2g')}).</p>")
    return out


def _training(report: dict[str, Any]) -> str:
    training = report.get("training") or {}
    rows = [(_e(label), _num(training.get(key))) for key, label in _TRAINING_KEYS
            if key in training]
    secure = report.get("secure_mode") or {}
    out = "<h2>Training parameters</h2>" + (_table(("", "value"), rows, {1}) if rows else "")
    if secure.get("seeded"):
        out += f'<div class="banner warn"><b>Seeded run.</b> {_e(secure.get("note", ""))}</div>'
    elif secure:
        out += f"<p><b>Noise source.</b> {_e(secure.get('note', ''))}</p>"
    return out


def _columns(report: dict[str, Any]) -> str:
    rows = [(_e(c.get("name")), _e(c.get("kind")), _e(c.get("source")), _e(c.get("note") or ""))
            for c in report.get("columns", [])]
    out = ("<h2>Columns</h2><p>Source <code>public</code>: declared in the schema, no budget; "
           "<code>dp</code>: estimated by the histogram mechanism in the ledger; "
           "<code>dropped</code>: not learned.</p>") + _table(("column", "kind", "source", "note"),
                                                              rows)
    warnings = report.get("warnings") or []
    if warnings:
        out += "<h3>Warnings</h3><ul>" + "".join(f"<li>{_e(w)}</li>" for w in warnings) + "</ul>"
    return out


def _sampling(report: dict[str, Any]) -> str:
    sampling = report.get("sampling")
    if not sampling:
        return ""
    rows = [("fixed values and ranges", _e(", ".join(sampling.get("conditions", [])) or "-"))]
    if sampling.get("rebalance"):
        r = sampling["rebalance"]
        rows.append(("rebalanced", _e(", ".join(f"{r['column']}={v}: {s:g}"
                                                for v, s in r["shares"].items()))))
    seed = sampling.get("seed_rows")
    if seed:
        rows.append(("seed rows", _e(f"{seed['rows']:,} rows fixing "
                                     f"{', '.join(seed['columns'])}")))
    out = "<h2>Conditioned output</h2>" + _table(("", "asked for"), rows)
    out += f"<p>{_e(sampling.get('note', ''))}</p>"
    if seed:
        out += f'<div class="banner warn">{_e(seed.get("note", ""))}</div>'
    return out


def _quality(plots: _Plots, q: dict[str, Any]) -> str:
    rows = [(_e(c["column"]), _e(c["sdtype"]), _e(c["metric"]), _num(c.get("score"), ".3f"),
             _num(c.get("pair_trends_mean"), ".3f"), _num(c.get("real_missing_share"), ".1%"),
             _num(c.get("synthetic_missing_share"), ".1%")) for c in q.get("columns", [])]
    return (
        "<h3>Statistical quality</h3>"
        f'<div class="cards"><div class="card"><b>{_num(q.get("score"), ".3f")}</b>'
        '<span>overall (SDMetrics quality score)</span></div>'
        f'<div class="card"><b>{_num(q.get("column_shapes"), ".3f")}</b>'
        '<span>column shapes</span></div>'
        f'<div class="card"><b>{_num(q.get("column_pair_trends"), ".3f")}</b>'
        '<span>column pair trends</span></div></div>'
        f"<p>{_e(q.get('method', ''))}; real: the {_num(q.get('real_rows'), ',')} training rows, "
        f"synthetic: {_num(q.get('synthetic_rows'), ',')} rows.</p>"
        + _shape_plot(plots, q)
        + _table(("column", "type", "metric", "shape score", "mean pair score",
                  "missing (real)", "missing (synthetic)"), rows, {3, 4, 5, 6})
        + _distribution_plot(plots, q.get("distributions", []))
    )


def _utility(u: dict[str, Any]) -> str:
    metric = "ROC AUC" if u.get("metric") == "roc_auc" else "R\u00b2"
    rows = [
        ("trained on synthetic, tested on real holdout", _num(u.get("synthetic_score"), ".4f"),
         _num(u.get("synthetic_train_rows"), ",")),
        ("trained on real training rows, tested on real holdout", _num(u.get("real_score"), ".4f"),
         _num(u.get("real_train_rows"), ",")),
    ]
    notes = "".join(f"<li>{_e(n)}</li>" for n in u.get("notes", []))
    verdict = utility_verdict(u)
    return (f"<h3>Machine-learning utility: predicting <code>{_e(u.get('target'))}</code></h3>"
            f"<p>{_e(u.get('task', ''))}, {_e(u.get('model', ''))}; test set: "
            f"{_num(u.get('test_rows'), ',')} holdout rows.</p>"
            + _table(("model", metric, "training rows"), rows, {1, 2})
            + (f'<p class="verdict"><b>{_e(verdict)}</b></p>' if verdict else "")
            + (f"<ul>{notes}</ul>" if notes else ""))


def audit_verdicts(a: dict[str, Any]) -> list[tuple[str, str, str, bool | None, str]]:
    """(measure, value, reference, passed, what it means) for each audit figure: a verdict
    that says what it means, and a sentence of guidance."""
    checks = {c["metric"]: c for c in a.get("checks", [])}

    def passed(key: str) -> bool | None:
        return bool(checks[key]["passed"]) if key in checks else None

    out: list[tuple[str, str, str, bool | None, str]] = []
    dcr = a.get("dcr_share")
    if isinstance(dcr, int | float):
        if dcr > 0.55:
            says = ("Synthetic rows sit closer to training rows than to real rows the model "
                    "never saw: a sign of memorisation. Do not release this table; train again "
                    "with a smaller epsilon or fewer epochs, and look for duplicated rows in "
                    "the input.")
        elif dcr < 0.45:
            says = ("Synthetic rows sit farther from the training rows than from real rows the "
                    "model never saw: no sign of copying. (The model follows the population "
                    "loosely; that is a matter of quality, not of privacy.)")
        else:
            says = ("Synthetic rows are as close to real rows the model never saw as to its "
                    "training rows: no sign of copying.")
        out.append(("DCR share: synthetic rows closer to a training row than to a holdout row",
                    _num(dcr, ".3f"), "0.5 when nothing is copied; above 0.55 fails",
                    passed("dcr_share"), says))
    mia = a.get("mia_auc")
    if isinstance(mia, int | float):
        says = ("An attacker who guesses 'was in training' for real rows near a synthetic row "
                "does no better than a coin toss." if mia <= 0.55 else
                "Real rows near synthetic rows were training rows more often than chance: "
                "investigate before release (smaller epsilon, fewer epochs, duplicated rows).")
        out.append(("Membership-inference AUC (distance attack)", _num(mia, ".3f"),
                    "0.5 is chance; above 0.55 fails", passed("mia_auc"), says))
    exact, reference = a.get("exact_match_rate"), a.get("exact_match_reference")
    if isinstance(exact, int | float) and isinstance(reference, int | float):
        if exact == 0:
            says = ("No synthetic row is identical to a training row (the holdout's own rate, "
                    f"for reference: {reference:.2%} of the real rows the model never saw are "
                    "identical to a training row).")
        elif exact <= reference:
            says = (f"{exact:.2%} of synthetic rows are identical to a training row, while "
                    f"{reference:.2%} of the holdout's real rows, which the model never saw, "
                    "are identical to a training row too: such rows are common in this "
                    "population, and the synthetic table repeats them no more often than a "
                    "fresh sample of real rows would. No sign of copying.")
        else:
            says = (f"{exact:.2%} of synthetic rows are identical to a training row, more than "
                    f"the {reference:.2%} of the holdout's real rows that are: the model may "
                    "repeat training rows. Check which rows repeat before release.")
        out.append(("Synthetic rows identical to a training row", _num(exact, ".2%"),
                    f"at most the holdout's own rate, {_num(reference, '.2%')}",
                    passed("exact_match_rate"), says))
    nndr, ref = a.get("nndr"), a.get("nndr_holdout")
    if isinstance(nndr, int | float):
        out.append(("Median nearest-neighbour distance ratio (training)", _num(nndr, ".3f"),
                    f"close to the holdout's {_num(ref, '.3f')}", None,
                    "Near 0 would mean synthetic rows sit on top of single training rows; "
                    "close to the holdout's figure means they do not."))
    return out


def _audit(plots: _Plots, a: dict[str, Any]) -> str:
    rows = [(_e(measure), value, _e(reference),
             _badge(ok) if ok is not None else "", _e(says))
            for measure, value, reference, ok, says in audit_verdicts(a)]
    return (
        "<h3>Empirical privacy audit</h3>"
        f"<p>Reference sets of {_num(a.get('reference_rows'), ',')} training rows (random) and "
        f"{_num(a.get('reference_rows'), ',')} holdout rows; "
        f"{_num(a.get('synthetic_rows'), ',')} synthetic rows. "
        f"MIA AUC standard error about {_num(a.get('mia_auc_se'), '.3f')}. "
        f"{_e(a.get('distance', ''))}.</p>"
        + _table(("measure", "value", "reference", "check", "what it means"), rows, {1})
        + _dcr_plot(plots, a)
        + "<p>These are tests of the implementation against gross leaks (copies of rows, "
          "overfitting). They are not the privacy guarantee, and an attack that fails here "
          "does not prove that every attack fails.</p>"
    )


def _owner_only(plots: _Plots, evaluation: dict[str, Any]) -> str:
    notice = evaluation.get("notice") or (
        "Computed on the real data without differential privacy: for the data owner only.")
    out = [f'<section class="owner"><h2>For the data owner only</h2>'
           f'<div class="banner warn">{_e(notice)}</div>']
    holdout = evaluation.get("holdout")
    if holdout:
        job = evaluation.get("job") or {}
        training, held = holdout.get("training_rows"), holdout.get("rows")
        total = training + held if isinstance(training, int) and isinstance(held, int) else None
        estimate = job.get("rows")
        out.append(f"<p><b>Rows.</b> The input had {_num(total, ',')} rows: "
                   f"{_num(held, ',')} ({_num(holdout.get('share'), '.0%')}) were split off "
                   "before training (the holdout, used for: "
                   f"{_e(', '.join(holdout.get('used_for', [])))}) and the model learned from "
                   f"the other {_num(training, ',')}. "
                   + (f"The public report shows {_num(estimate, ',')} training rows: a DP "
                      "estimate of that count, which is private. " if estimate else "")
                   + f"{_e(holdout.get('note', ''))}</p>")
    if evaluation.get("compared_with"):
        out.append(f"<p><b>Conditioned output.</b> Compared with {_e(evaluation['compared_with'])}"
                   ".</p>")
    if evaluation.get("quality"):
        out.append(_quality(plots, evaluation["quality"]))
    if evaluation.get("utility"):
        out.append(_utility(evaluation["utility"]))
    if evaluation.get("audit"):
        out.append(_audit(plots, evaluation["audit"]))
        if evaluation.get("heuristics"):
            out.append(f'<p class="banner warn">{_e(evaluation["heuristics"])}</p>')
    for section, why in (evaluation.get("skipped") or {}).items():
        out.append(f"<p><i>{_e(section)} not computed: {_e(why)}.</i></p>")
    out.append("</section>")
    return "".join(out)


def _page(title: str, parts: list[str]) -> str:
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>"
        + "".join(parts) + "</body></html>\n"
    )


def render(report: dict[str, Any], budget: dict[str, Any] | None = None) -> str:
    """The public report: DP outputs and public facts only (no owner-only section)."""
    plots = _Plots()
    dp = report.get("dp") is not False
    title = "Privacy report" if dp else "NOT PRIVATE - debug report"
    parts = [_header(report)]
    if dp:
        parts += [_meaning(report), _budget(budget), _ledger(report),
                  "<h2>Epsilon over training</h2>", _epsilon_plot(plots, report),
                  _training(report), _columns(report), _sampling(report)]
    parts.append(f"<footer>synthgen {_e(report.get('synthgen_version', '?'))}; report schema "
                 f"version {_e(report.get('report_schema_version', '?'))}.</footer>")
    return _page(title, parts)


def render_evaluation(evaluation: dict[str, Any]) -> str:
    """The owner-only evaluation: quality, utility and audit on the real rows."""
    plots = _Plots()
    job = evaluation.get("job") or {}
    parts = ["<h1>Evaluation (owner only)</h1><p class=\"sub\">Of the synthetic table released "
             f"at epsilon {_num(job.get('epsilon'), '.4g')} (target "
             f"{_num(job.get('target_epsilon'), 'g')}); the privacy budget is in the public "
             "report.</p>", _owner_only(plots, evaluation),
             f"<footer>synthgen {_e(job.get('synthgen_version', '?'))}; evaluation schema "
             f"version {_e(evaluation.get('evaluation_schema_version', '?'))}.</footer>"]
    return _page("Owner-only evaluation", parts)
