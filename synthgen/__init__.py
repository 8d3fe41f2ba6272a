"""synthgen: differentially private synthetic tables.

>>> from synthgen import Synthesizer
>>> synth = Synthesizer(epsilon=1.0).fit(df)        # doctest: +SKIP
>>> synthetic = synth.sample(len(df))               # doctest: +SKIP
"""

__version__ = "0.1.0"

from synthgen.errors import InputError, SchemaError, SynthgenError  # noqa: E402
from synthgen.schema import ColumnKind, ColumnSpec, TableSchema  # noqa: E402
from synthgen.synthesizer import Synthesizer  # noqa: E402

__all__ = [
    "ColumnKind",
    "ColumnSpec",
    "InputError",
    "SchemaError",
    "Synthesizer",
    "SynthgenError",
    "TableSchema",
    "__version__",
]
