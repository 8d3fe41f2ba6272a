"""The privacy-budget report of one fit (JSON-ready dict)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import opacus

from synthgen import __version__

if TYPE_CHECKING:
    from synthgen.synthesizer import Synthesizer

REPORT_SCHEMA_VERSION = 1

GUARANTEE = (
    "The synthetic table and the model are ({epsilon:.3g}, {delta:.2g})-differentially private "
    "with respect to adding or removing one row of the training table: every read of the table "
    "(listed in the ledger) is a Gaussian mechanism, and their composition, computed by the "
    "{accountant} accountant, is the epsilon above. Not protected: facts declared public - column "
    "names, their formats and kinds, any bounds or category lists in a user schema, and the number "
    "of rows. A person with several rows is protected as several rows (group privacy)."
)

SECURE_MODE_NOTE = (
    "Noise is drawn from PyTorch's and NumPy's default generators, not a CSPRNG: Opacus's "
    "secure_mode needs torchcsprng, which has no release for current PyTorch. The accepted risk is "
    "floating-point and generator-state attacks on the noise; the seed is never stored in the "
    "model. Runs with --seed are reproducible, and their noise is only as secret as the seed."
)


def build_report(synth: Synthesizer) -> dict[str, Any]:
    ledger = synth.ledger
    if ledger is None:
        raise RuntimeError("fit the synthesizer first")
    info = synth.info
    spent = float(info.get("epsilon", ledger.epsilon()))
    delta = ledger.delta()
    return {
        "report_schema_version": REPORT_SCHEMA_VERSION,
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
        "secure_mode": {"enabled": False, "note": SECURE_MODE_NOTE},
        "ledger": ledger.to_dict()["entries"],
        "rows": info.get("rows"),
        "columns": [
            {"name": d.name, "kind": d.kind.value, "source": d.source, "note": d.note}
            for d in synth.domains
        ],
        "completed": info.get("completed", True),
        "training": info.get("training", {}),
        "device": info.get("device"),
        "timings": info.get("timings", {}),
        "warnings": info.get("warnings", []),
    }
