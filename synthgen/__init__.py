"""synthgen: differentially private synthetic tables.

>>> from synthgen import Synthesizer
>>> synth = Synthesizer(epsilon=1.0).fit(df)        # doctest: +SKIP
>>> synthetic = synth.sample(len(df))               # doctest: +SKIP

The names below torch and pandas are imported on first use (PEP 562), so that importing a light
module such as :mod:`synthgen.client` or :mod:`synthgen.cli` does not load the training stack.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from synthgen._version import __version__
from synthgen.errors import InputError, SchemaError, SynthgenError, SynthgenWarning

if TYPE_CHECKING:
    from synthgen.schema import ColumnKind, ColumnSpec, TableSchema
    from synthgen.synthesizer import Synthesizer

_LAZY = {
    "ColumnKind": "synthgen.schema",
    "ColumnSpec": "synthgen.schema",
    "TableSchema": "synthgen.schema",
    "Synthesizer": "synthgen.synthesizer",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'synthgen' has no attribute {name!r}")
    value = getattr(import_module(_LAZY[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = [
    "ColumnKind",
    "ColumnSpec",
    "InputError",
    "SchemaError",
    "Synthesizer",
    "SynthgenError",
    "SynthgenWarning",
    "TableSchema",
    "__version__",
]
