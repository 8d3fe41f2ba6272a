"""User-facing errors.

Every error a user can cause carries a stable ``code`` (it becomes the RFC 9457 ``type`` in the
API) and a sentence that says what to do, in the manner of pydantic's error codes.
"""

from __future__ import annotations

import re
from typing import Any


class SynthgenError(Exception):
    """Base class of every error synthgen raises on purpose."""

    code = "synthgen-error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return self.message


class InputError(SynthgenError):
    """The table a user gave cannot be used (malformed, empty, wrong encoding, too large)."""

    code = "invalid-input"


class SchemaError(SynthgenError):
    """A schema file, or a column's declared kind or domain, is invalid."""

    code = "invalid-schema"


class BudgetError(SynthgenError):
    """The privacy budget cannot cover what was asked (too small an epsilon, cap exceeded)."""

    code = "privacy-budget"


class ArtifactError(SynthgenError):
    """A saved model cannot be loaded."""

    code = "invalid-artifact"


class SynthgenWarning(UserWarning):
    """Something a fit decided that the user should know: a column dropped, rare values folded
    into ``Other``. Raised through :mod:`warnings` (filter it by this class), and listed in the
    report's ``warnings`` too."""


class ConditionError(SynthgenError):
    """A sampling condition, rebalancing or seed row cannot be honoured as asked (an unknown
    column or category, a share outside (0, 1), contradictory conditions, too rare a case)."""

    code = "invalid-condition"


# What fit decided about the data, as the report lists it (one sentence each), and the same
# as records a program can act on: a stable code, the column, the figure.
_WARNING_FORMS: list[tuple[str, re.Pattern[str]]] = [
    ("values-folded-into-other", re.compile(
        r"^column (?P<column>'[^']*'|\"[^\"]*\"): (?P<figure>\d+)% of its values fold into")),
    ("column-dropped", re.compile(r"^column (?P<column>'[^']*'|\"[^\"]*\") dropped: ")),
    ("index-column-dropped", re.compile(r"^the first column of .* has no name")),
    ("delta-above-1-over-10n", re.compile(
        r"^the default delta .* about (?P<figure>[\d,]+) rows \(a DP estimate\)")),
]


def warning_record(message: str) -> dict[str, Any]:
    """``{"code", "column", "figure", "message"}`` of one of fit's warnings: ``figure`` is the
    share folded into ``Other`` (0.3 for 30 %), or the DP row estimate behind a delta warning;
    None where there is none (a dropped column)."""
    for code, form in _WARNING_FORMS:
        found = form.match(message)
        if found is None:
            continue
        groups = found.groupdict()
        column = groups.get("column")
        figure: float | None = None
        if groups.get("figure"):
            figure = float(groups["figure"].replace(",", ""))
            if code == "values-folded-into-other":
                figure /= 100
        return {"code": code, "column": column[1:-1] if column else None, "figure": figure,
                "message": message}
    return {"code": "warning", "column": None, "figure": None, "message": message}
