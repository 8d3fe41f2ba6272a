"""User-facing errors.

Every error a user can cause carries a stable ``code`` (it becomes the RFC 9457 ``type`` in the
API) and a sentence that says what to do, in the manner of pydantic's error codes.
"""

from __future__ import annotations


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
