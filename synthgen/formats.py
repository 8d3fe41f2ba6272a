"""How a column's text maps to values and back: one place for numbers, money, percentages,
dates and times in their format, codes with leading zeros and booleans in their spelling.

A :class:`CellFormat` is a public spelling of a column's cells, written as a short pattern a
person can read and declare in a schema (``"format"``):

- numbers: an Excel-like pattern, ``0``, ``0.00``, ``#,##0.00``, ``$#,##0.00``, ``#.##0,00 €``,
  ``0.0%``: currency and percent signs, the thousands separator, the decimal separator and the
  number of decimals (``0.#`` keeps every decimal);
- dates and times: a ``strftime`` pattern, ``%Y-%m-%d``, ``%m/%d/%Y``, ``%d.%m.%Y %H:%M`` (and
  ``%Y-%m-%dT%H:%M:%S%:z`` for an ISO time with an offset, written back in UTC);
- booleans: the pair of words, true first: ``True/False``, ``yes/no``, ``Y/N``;
- ``code``: digit strings whose leading zeros matter (ZIP codes, ``007``): text, never numbers.

Which format a column has is a DP release, never a reading of the raw column: every undeclared
column votes, each non-empty cell for the one candidate of :data:`CANDIDATES` its text is
written in (or ``text``), and the noisy counts decide (:mod:`synthgen.privacy.domains`). Parsing
with the decided format and writing values back in it are post-processing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd

NUMBER, DATE, BOOL, CODE = "number", "date", "bool", "code"

_CURRENCIES = ("$", "€", "£")


@dataclass(frozen=True)
class _NumberSpelling:
    prefix: str = ""
    suffix: str = ""
    group: str = ""  # thousands separator, "" for none
    decimal: str = "."
    decimals: int | None = 0  # None: as many as the value has


def _number_spelling(pattern: str) -> _NumberSpelling:
    core = re.search(r"[#0][#0,. ]*", pattern)
    if core is None:
        raise ValueError(f"number format {pattern!r} has no digits (# or 0)")
    body = core.group(0).rstrip(" ")
    prefix, suffix = pattern[: core.start()], pattern[core.start() + len(body):]
    group = ""
    if body.startswith("#"):  # "#,##0": the separator after the first #
        after = body[1:]
        group = after[:1] if after[:1] in ",. " else ""
        body = body[body.rindex("#", 0, body.index("0")) + 1:]
    # body is now "0", "0.00", "0,0", "0.#"
    match = re.fullmatch(r"0([.,])?(0+|#)?", body)
    if match is None or (match.group(1) is None) != (match.group(2) is None):
        raise ValueError(f"number format {pattern!r} is not understood (try 0.00 or #,##0.00)")
    decimal = match.group(1) or ("," if group == "." else ".")
    if decimal == group:
        raise ValueError(f"number format {pattern!r} uses {decimal!r} twice")
    digits = match.group(2)
    decimals = None if digits == "#" else len(digits or "")
    return _NumberSpelling(prefix, suffix, group, decimal, decimals)


_DATE_DIRECTIVES = re.compile(r"%(:z|[YmdHMSz])")
_DATE_FIELD = {"Y": r"\d{4}", "m": r"\d{1,2}", "d": r"\d{1,2}", "H": r"\d{1,2}",
               "M": r"\d{2}", "S": r"\d{2}(?:\.\d+)?", "z": r"(?:Z|[+-]\d{2}:?\d{2})",
               ":z": r"(?:Z|[+-]\d{2}:?\d{2})"}


@dataclass(frozen=True)
class CellFormat:
    """A column's public spelling (see the module docstring); ``pattern`` is what a schema says
    and what :meth:`parse` / :meth:`write` follow."""

    family: str
    pattern: str

    # ------------------------------------------------------------------ reading

    @cached_property
    def _number(self) -> _NumberSpelling:
        return _number_spelling(self.pattern)

    @cached_property
    def _regex(self) -> re.Pattern[str]:
        """Cells in this format (numbers: any number of decimals, as parsing accepts)."""
        if self.family == NUMBER:
            s = self._number
            # thousands separators are read even where the format writes none (a vote may
            # elect "0.00" where a few cells wrote "1,234.50")
            sep = s.group or ("." if s.decimal == "," else ",")
            group = rf"\d{{1,3}}(?:{re.escape(sep)}\d{{3}})+|"
            decimals = rf"(?:{re.escape(s.decimal)}\d+)?"
            return re.compile(rf"^\s*[-+]?\s*{re.escape(s.prefix.strip())}\s*[-+]?\s*"
                              rf"(?P<int>{group}\d+){decimals}\s*{re.escape(s.suffix.strip())}"
                              r"\s*$")
        if self.family == DATE:
            out, at = "", 0
            for m in _DATE_DIRECTIVES.finditer(self.pattern):
                out += re.escape(self.pattern[at:m.start()]) + _DATE_FIELD[m.group(1)]
                at = m.end()
            return re.compile("^" + out + re.escape(self.pattern[at:]) + "$")
        if self.family == CODE:
            return re.compile(r"^\d+$")
        words = self.pattern.split("/")
        return re.compile("^(" + "|".join(map(re.escape, words)) + ")$")

    def parse(self, texts: np.ndarray) -> np.ndarray:
        """Float values of texts in this format (dates as seconds since the epoch, booleans as
        0/1), NaN for a text that is not. For distinct values: no factorisation here."""
        out = np.full(len(texts), np.nan)
        strings = [t.strip() if isinstance(t, str) else "" for t in texts]
        hit = np.array([self._regex.match(t) is not None for t in strings], dtype=bool)
        if not hit.any():
            return out
        chosen = [t for t, h in zip(strings, hit, strict=True) if h]
        if self.family == NUMBER:
            s = self._number
            cleaned = []
            for t in chosen:
                t = t.replace(s.prefix.strip(), "", 1) if s.prefix.strip() else t
                t = t.replace(s.suffix.strip(), "") if s.suffix.strip() else t
                t = t.replace(" ", "").replace(s.group or ("." if s.decimal == "," else ","),
                                              "")
                if s.decimal != ".":
                    t = t.replace(s.decimal, ".")
                cleaned.append(t)
            out[hit] = pd.to_numeric(pd.Series(cleaned), errors="coerce").to_numpy()
        elif self.family == DATE:
            parsed = pd.to_datetime(pd.Series(chosen), errors="coerce",
                                    format=_strptime_pattern(self.pattern), utc=True)
            seconds = parsed.dt.tz_convert(None).to_numpy("datetime64[s]").astype(np.float64)
            seconds[parsed.isna().to_numpy()] = np.nan
            out[hit] = seconds
        elif self.family == BOOL:
            true = self.pattern.split("/")[0]
            out[hit] = [1.0 if t == true else 0.0 for t in chosen]
        return out

    # ------------------------------------------------------------------ writing

    def write(self, x: np.ndarray, null: np.ndarray) -> np.ndarray:
        """Texts of values (as :meth:`parse` reads them) in this format; None where null."""
        out = np.full(len(x), None, dtype=object)
        keep = ~null & np.isfinite(x)
        if not keep.any():
            return out
        values = x[keep]
        if self.family == NUMBER:
            out[keep] = _write_numbers(self._number, values)
        elif self.family == DATE:
            stamps = pd.Series(pd.to_datetime(np.round(values), unit="s"))
            pattern = self.pattern.replace("%:z", "+00:00").replace("%z", "+0000")
            out[keep] = stamps.dt.strftime(pattern).to_numpy(dtype=object)
        elif self.family == BOOL:
            true, false = self.pattern.split("/")
            out[keep] = np.where(values >= 0.5, true, false).astype(object)
        else:  # codes are categories: their labels are written as released
            out[keep] = np.array([str(int(v)) for v in values], dtype=object)
        return out

    @property
    def is_plain(self) -> bool:
        """Written as pandas writes the value itself (a plain number, an ISO date, True/False):
        the decoded column keeps its numeric, date or boolean dtype."""
        if self.family == NUMBER:
            s = self._number
            return not (s.prefix or s.suffix or s.group) and s.decimal == "."
        if self.family == DATE:
            return self.pattern in ("%Y-%m-%d", "%Y-%m-%d %H:%M:%S")
        return self.family == BOOL and self.pattern == "True/False"

    @property
    def decimals(self) -> int | None:
        return self._number.decimals if self.family == NUMBER else None


def _strptime_pattern(pattern: str) -> str:
    return pattern.replace("%:z", "%z")


def _write_numbers(s: _NumberSpelling, values: np.ndarray) -> np.ndarray:
    if s.decimals is not None:
        values = np.round(values, s.decimals)
    spec = f",.{s.decimals}f" if s.decimals is not None else ","
    texts = []
    for v in values.tolist():
        text = format(abs(v), spec) if s.decimals is not None else _full(abs(v))
        if s.decimals is None and s.group:
            whole, _, frac = text.partition(".")
            text = f"{int(whole):,}" + (f".{frac}" if frac else "")
        if not s.group:
            text = text.replace(",", "")
        # swap to the format's separators through a placeholder
        text = text.replace(",", "\0").replace(".", s.decimal).replace("\0", s.group)
        texts.append(("-" if v < 0 else "") + s.prefix + text + s.suffix)
    return np.array(texts, dtype=object)


def _full(v: float) -> str:
    text = repr(float(v))
    if "e" in text or "E" in text:
        text = format(v, "f")
    return text[:-2] if text.endswith(".0") else text


def from_pattern(pattern: str) -> CellFormat:
    """A declared format (a schema's ``"format"``), checked: ValueError says what is wrong."""
    if not isinstance(pattern, str) or not pattern.strip():
        raise ValueError("a format is a non-empty text such as 0.00, %m/%d/%Y or yes/no")
    if pattern == CODE:
        return CellFormat(CODE, CODE)
    if "%" in pattern and _DATE_DIRECTIVES.search(pattern):
        leftover = _DATE_DIRECTIVES.sub("", pattern)
        if "%" in leftover:
            raise ValueError(f"date format {pattern!r} uses a directive other than "
                             "%Y %m %d %H %M %S %z")
        if not all(f"%{d}" in pattern for d in "Ymd"):
            raise ValueError(f"date format {pattern!r} needs %Y, %m and %d")
        return CellFormat(DATE, pattern)
    if re.fullmatch(r"[^/\d]+/[^/\d]+", pattern):
        return CellFormat(BOOL, pattern)
    _number_spelling(pattern)  # raises when not understood
    return CellFormat(NUMBER, pattern)


# ----------------------------------------------------------------------------- the candidates

_PLAIN = ("0", "0.0", "0.00", "0.000", "0.0000", "0.#")
_NUMBER_PATTERNS = (
    *_PLAIN, "#,##0", "#,##0.0", "#,##0.00",
    "0,0", "0,00", "0,000", "#.##0", "#.##0,00",
    *(f"{c}{core}" for c in _CURRENCIES for core in ("0", "0.00", "#,##0", "#,##0.00")),
    "0%", "0.0%", "0.00%", "0,0%",
    *(f"{core}{suffix}" for suffix in (" €", "€") for core in ("0,00", "#.##0,00", "#.##0")),
)
_DATE_ORDERS = ("%Y-%m-%d", "%m/%d/%Y", "%d/%m/%Y", "%d.%m.%Y", "%Y/%m/%d", "%d-%m-%Y",
                "%m-%d-%Y")
_TIMES = ("", " %H:%M", " %H:%M:%S", "T%H:%M:%S", "T%H:%M:%S%:z")
_BOOL_PAIRS = ("True/False", "true/false", "TRUE/FALSE", "yes/no", "Yes/No", "YES/NO", "Y/N",
               "y/n", "T/F")

#: The public list each cell votes among (its position is its key); one more key, ``text``,
#: takes every other cell. Fixed, so the vote's keys reveal nothing.
CANDIDATES: tuple[CellFormat, ...] = (
    *(CellFormat(NUMBER, p) for p in _NUMBER_PATTERNS),
    CellFormat(CODE, CODE),
    *(CellFormat(DATE, d + t) for d in _DATE_ORDERS for t in _TIMES),
    *(CellFormat(BOOL, p) for p in _BOOL_PAIRS),
)
TEXT_KEY = len(CANDIDATES)
_KEY = {f.pattern: i for i, f in enumerate(CANDIDATES)}
_BOOL_WORD = {w: _KEY[p] for p in _BOOL_PAIRS for w in p.split("/")}

_NUM_CELL = re.compile(
    r"^(?P<pre>[$€£]?)\s*(?P<sign>-?)\s*(?P<pre2>[$€£]?)"
    r"(?P<int>\d{1,3}(?:(?P<group>[,. ])\d{3})+|\d+)(?:(?P<dec>[.,])(?P<frac>\d+))?"
    r"(?P<suf>%| ?€)?$")
_DATE_CELL = re.compile(
    r"^(?:(?P<y1>\d{4})(?P<s1>[-/])(?P<a1>\d{1,2})(?P=s1)(?P<b1>\d{1,2})"
    r"|(?P<a2>\d{1,2})(?P<s2>[/.-])(?P<b2>\d{1,2})(?P=s2)(?P<y2>\d{4}))"
    r"(?P<time>[ T]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?(?P<tz>Z|[+-]\d{2}:?\d{2})?$")


def _number_key(m: re.Match[str]) -> int | None:
    pre = m["pre"] or m["pre2"]
    group, dec, frac, suf = m["group"] or "", m["dec"], m["frac"] or "", m["suf"] or ""
    if group and dec == group:
        return None
    if not group and dec == "," and len(frac) == 3 and not suf:
        group, dec, frac = ",", None, ""  # "1,234" again
    if group == " ":
        return None
    core = "0" if not group else f"#{group}##0"
    if dec is not None:
        if not pre and not suf and not group and dec == "." and len(frac) > 4:
            core += ".#"
        else:
            core += dec + "0" * len(frac)
    return _KEY.get(f"{pre}{core}{suf}")


def _date_key(m: re.Match[str]) -> int | None:
    if m["y1"]:
        order = "%Y-%m-%d" if m["s1"] == "-" else "%Y/%m/%d"
    else:
        a, b, sep = int(m["a2"]), int(m["b2"]), m["s2"]
        if sep == ".":
            order = "%d.%m.%Y"
        else:
            day_first = a > 12 >= b
            order = f"%d{sep}%m{sep}%Y" if day_first else f"%m{sep}%d{sep}%Y"
    time, tz = m["time"] or "", m["tz"]
    suffix: str | None
    if not time:
        suffix = ""
    elif tz:
        suffix = "T%H:%M:%S%:z"
    elif time.count(":") == 1:
        suffix = f"{time[0]}%H:%M" if time[0] == " " else None
    else:
        suffix = " %H:%M:%S" if time[0] == " " else "T%H:%M:%S"
    if suffix is None:
        return None
    return _KEY.get(order + suffix)


def text_key(text: str) -> int:
    """The candidate a cell's text is written in (its index in CANDIDATES), or TEXT_KEY."""
    t = text.strip()
    if t in _BOOL_WORD:
        return _BOOL_WORD[t]
    if len(t) > 1 and t[0] == "0" and t.isdigit():
        return _KEY[CODE]
    m = _NUM_CELL.match(t)
    if m is not None:
        key = _number_key(m)
        return TEXT_KEY if key is None else key
    m = _DATE_CELL.match(t)
    if m is not None:
        key = _date_key(m)
        return TEXT_KEY if key is None else key
    return TEXT_KEY


def _float_key(v: float) -> int:
    for d in range(5):
        if abs(v - round(v, d)) <= 1e-9 * max(1.0, abs(v)):
            return _KEY[_PLAIN[d]]
    return _KEY["0.#"]


def value_keys(values: pd.Series) -> np.ndarray:
    """The key of each of ``values`` (distinct non-null cells, as the reader typed them)."""
    objects = values.to_numpy(dtype=object)
    keys = np.full(len(objects), TEXT_KEY, dtype=np.int64)
    for i, v in enumerate(objects):
        if isinstance(v, str):
            keys[i] = text_key(v)
        elif isinstance(v, bool | np.bool_):
            keys[i] = _KEY["True/False"]
        elif isinstance(v, int | np.integer):
            keys[i] = _KEY["0"]
        elif isinstance(v, float | np.floating):
            keys[i] = _float_key(float(v)) if np.isfinite(v) else TEXT_KEY
        elif isinstance(v, pd.Timestamp | np.datetime64):
            stamp = pd.Timestamp(v)
            keys[i] = _KEY["%Y-%m-%d" if stamp == stamp.normalize() else "%Y-%m-%d %H:%M:%S"]
    return keys


FAMILY_OF_KIND = {"integer": (NUMBER,), "continuous": (NUMBER,), "datetime": (DATE,),
                  "boolean": (BOOL,)}


def decide(noisy: np.ndarray, threshold: float, families: tuple[str, ...] | None = None,
           code_share: float = 0.05) -> CellFormat | None:
    """The format a column's noisy vote elects: the candidate with the largest count among
    ``families`` (all when None), if it clears ``threshold`` and beats plain text. A ``code``
    count that clears the threshold and holds ``code_share`` of the votes wins over numbers: a
    number column never writes leading zeros, while a ZIP column writes many. None: nothing
    cleared the threshold, or plain text did better."""
    allowed = np.array([families is None or f.family in families for f in CANDIDATES])
    votes = np.where(allowed, noisy[:TEXT_KEY], -np.inf)
    code = _KEY[CODE]
    total = float(np.clip(noisy, 0, None).sum())
    if votes[code] > max(threshold, code_share * total):
        return CANDIDATES[code]
    best = int(np.argmax(votes))
    if votes[best] <= threshold or (families is None and noisy[TEXT_KEY] > votes[best]):
        return None
    # A number under 1,000 shows no thousands separator: "$512.30" is also "$#,##0.00"
    # written small. Where the grouped twin's count is significant too, it is the format.
    twin = _GROUPED_TWIN.get(best)
    if twin is not None and votes[twin] > threshold:
        return CANDIDATES[twin]
    return CANDIDATES[best]


def _grouped(pattern: str) -> str:
    return pattern.replace("0", "#.##0" if "," in pattern else "#,##0", 1)


_GROUPED_TWIN = {i: _KEY[_grouped(f.pattern)] for i, f in enumerate(CANDIDATES)
                 if f.family == NUMBER and "#" not in f.pattern
                 and _grouped(f.pattern) in _KEY}
