"""Reading real files: the delimiter and encoding are detected (from the header line and the
bytes), each can be given, and the decimal mark is read only when given. Each case on a small
file of its own."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from synthgen.errors import InputError
from synthgen.io import CsvOptions, read_csv_bytes, read_table, sniff_delimiter


def _rows(n: int = 30) -> list[list[str]]:
    return [[f"Zoë {i}", "Köln" if i % 2 else "Zürich", str(i % 7)] for i in range(n)]


def _write(tmp_path: Path, text: str, *, sep: str = ",", encoding: str = "utf-8",
           name: str = "t.csv") -> Path:
    lines = [sep.join(["name", "city", "n"])] + [sep.join(r) for r in _rows()]
    path = tmp_path / name
    path.write_bytes(("\n".join(lines) + "\n" + text).encode(encoding))
    return path


@pytest.mark.parametrize(("sep", "said"), [(",", ","), (";", ";"), ("\t", "\t"), ("|", "|")],
                         ids=["comma", "semicolon", "tab", "pipe"])
def test_the_delimiter_is_detected_from_the_header(tmp_path: Path, sep: str, said: str) -> None:
    df = read_table(_write(tmp_path, "", sep=sep))
    assert list(df.columns) == ["name", "city", "n"] and len(df) == 30
    assert df["city"].iloc[1] == "Köln" and df["n"].tolist()[:3] == [0, 1, 2]
    assert df.attrs["csv"] == {"delimiter": said, "encoding": "utf-8", "decimal": None}
    assert "warnings" not in df.attrs  # a delimiter found in the header is not a guess


def test_sniffing_ignores_quoted_names_and_defaults_to_comma() -> None:
    assert sniff_delimiter('"a,b,c";"d,e";f') == ";"  # commas inside quotes do not count
    assert sniff_delimiter('"x,y";z') == ";"
    assert sniff_delimiter("only") == ","
    assert sniff_delimiter("a,b;c") == ","  # a tie: comma first


def test_a_semicolon_file_that_failed_before_now_reads(tmp_path: Path) -> None:
    """The issue's file: 'Expected 1 fields in line 3, saw 2' when read with commas."""
    path = tmp_path / "s.csv"
    path.write_bytes(b"a;b\n" + b"1;x,y\n" * 30)
    df = read_table(path)
    assert df["b"].iloc[0] == "x,y" and df["a"].sum() == 30


def test_a_given_delimiter_wins_over_detection(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_bytes(b"a;b,c\n" + b"1;2,3\n" * 30)  # a tie, comma detected
    assert list(read_table(path).columns) == ["a;b", "c"]
    df = read_table(path, delimiter="semicolon")
    assert list(df.columns) == ["a", "b,c"] and df.attrs["csv"]["delimiter"] == ";"
    assert list(read_table(path, delimiter=";").columns) == ["a", "b,c"]


def test_utf8_with_a_byte_order_mark(tmp_path: Path) -> None:
    df = read_table(_write(tmp_path, "", sep=";", encoding="utf-8-sig"))
    assert list(df.columns) == ["name", "city", "n"]  # no BOM glued to the first name
    assert df["name"].iloc[0] == "Zoë 0" and df.attrs["csv"]["encoding"] == "utf-8-sig"


@pytest.mark.parametrize("encoding", ["latin-1", "cp1252"])
def test_a_latin_1_or_windows_1252_file_is_read_with_a_warning(
        tmp_path: Path, encoding: str) -> None:
    extra = "Ève €5,Paris,1\n" if encoding == "cp1252" else "Ève,Paris,1\n"
    df = read_table(_write(tmp_path, extra, encoding=encoding))
    assert df["city"].iloc[1] == "Köln" and df["name"].iloc[-1].startswith("Ève")
    if encoding == "cp1252":
        assert df["name"].iloc[-1] == "Ève €5"  # 0x80 is the euro sign in Windows-1252
    assert df.attrs["csv"]["encoding"] == "cp1252"
    (warning,) = df.attrs["warnings"]
    assert "not UTF-8 (byte 0xeb at offset" in warning and "--encoding" in warning


def test_bytes_windows_1252_leaves_undefined_are_read_as_latin_1(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_bytes(b"a,b\n" + b"x\x81y,1\n" * 30)  # 0x81: a C1 control in Latin-1
    assert read_table(path)["a"].iloc[0] == "x\x81y"


def test_a_given_encoding_is_used_and_checked(tmp_path: Path) -> None:
    path = _write(tmp_path, "", encoding="latin-1")
    df = read_table(path, encoding="latin-1")
    assert df["city"].iloc[1] == "Köln" and "warnings" not in df.attrs
    assert df.attrs["csv"]["encoding"] == "iso8859-1"
    with pytest.raises(InputError) as info:
        read_table(path, encoding="utf-8")
    assert info.value.code == "bad-encoding"
    assert "not utf-8 text (byte 0xeb at offset 14), the encoding given" in str(info.value)
    # a UTF-8 file read as Latin-1 on request: mojibake, as asked, not an error
    assert read_table(_write(tmp_path, "", name="u.csv"), encoding="latin-1")[
        "city"].iloc[1] == "KÃ¶ln"


@pytest.mark.parametrize(("kwargs", "said"), [
    ({"encoding": "klingon"}, "unknown encoding 'klingon'"),
    ({"encoding": "utf-16"}, "not utf-16"),
    ({"delimiter": ";;"}, "is not one character"),
    ({"delimiter": '"'}, "is not one character"),
    ({"decimal": ";"}, "decimal mark must be . or ,"),
    ({"decimal": ",", "delimiter": ","}, "cannot both be ','"),
])
def test_bad_options_are_refused_before_reading(tmp_path: Path, kwargs: dict[str, str],
                                                said: str) -> None:
    with pytest.raises(InputError) as info:
        read_table(_write(tmp_path, ""), delimiter=kwargs.get("delimiter"),
                   encoding=kwargs.get("encoding"), decimal=kwargs.get("decimal"))
    assert info.value.code == "invalid-argument" and said in str(info.value)


def test_utf_16_and_binary_files_are_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(InputError) as info:
        read_table(_write(tmp_path, "", encoding="utf-16"))
    assert info.value.code == "bad-encoding" and "UTF-16" in str(info.value)
    path = tmp_path / "b.csv"
    path.write_bytes(b"a,b\n" + b"\x00\x01,2\n" * 30)
    with pytest.raises(InputError) as info:
        read_table(path)
    assert info.value.code == "bad-encoding" and "NUL bytes" in str(info.value)


def test_a_malformed_file_says_how_it_was_read_and_how_to_override(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_bytes(b"a;b\n" + b"1;2\n" * 30 + b"1;2;3\n")
    with pytest.raises(InputError) as info:
        read_table(path)
    text = str(info.value)
    assert info.value.code == "malformed-csv" and "line 32" in text
    assert "delimiter semicolon (detected from the header)" in text
    assert "encoding utf-8 (detected)" in text and "--delimiter" in text
    with pytest.raises(InputError) as info:
        read_table(path, delimiter=";", encoding="utf-8")
    assert "delimiter semicolon (given), encoding utf-8 (given)" in str(info.value)


def test_decimal_comma_is_read_only_when_given(tmp_path: Path) -> None:
    body = "id;amount;rate;day;code\n" + "".join(
        f"{i};{i}.234,5{i % 10};{i % 3},5;0{1 + i % 9}.02.2020;{i:03d}\n" for i in range(1, 31))
    path = tmp_path / "eu.csv"
    path.write_text(body)
    as_text = read_table(path)  # not given: the format layer sees the cells as written
    assert as_text["amount"].iloc[0] == "1.234,51" and as_text["rate"].iloc[0] == "1,5"
    assert as_text.attrs["csv"]["decimal"] is None
    df = read_table(path, decimal=",")
    assert df["amount"].iloc[0] == pytest.approx(1234.51)
    assert df["amount"].iloc[29] == pytest.approx(30234.50)
    assert df["rate"].tolist()[:3] == [1.5, 2.5, 0.5]
    assert df["day"].iloc[0] == "02.02.2020"  # a dd.mm.yyyy date is not a grouped number
    assert df["code"].iloc[0] == 1  # integers stay integers (pandas' own reading)
    assert df.attrs["csv"] == {"delimiter": ";", "encoding": "utf-8", "decimal": ","}


def test_decimal_point_with_thousands_commas(tmp_path: Path) -> None:
    path = tmp_path / "us.csv"
    path.write_text("a,b\n" + "".join(f'"{i},{i:03d}.50",x\n' for i in range(1, 31)))
    assert read_table(path)["a"].iloc[0] == "1,001.50"
    assert read_table(path, decimal=".")["a"].iloc[0] == pytest.approx(1001.5)


def test_a_mixed_column_stays_text_with_a_decimal_given(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text("a;b\n" + "1,5;x\n" * 29 + "unknown;y\n")
    assert read_table(path, decimal=",")["a"].iloc[0] == "1,5"


def test_parquet_takes_no_csv_options(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    pd.DataFrame({"x": range(30)}).to_parquet(path)
    with pytest.raises(InputError) as info:
        read_table(path, delimiter=";")
    assert info.value.code == "invalid-argument" and "Parquet" in str(info.value)


def test_bytes_and_blocks_read_alike_in_another_dialect(tmp_path: Path) -> None:
    rows = "".join(f'{i};"Zoë; {i}\nsecond line";{i % 5},5\n' for i in range(3000))
    raw = ("a;b;c\n" + rows).encode("cp1252")
    whole = read_csv_bytes(raw, decimal=",")
    blocks = read_csv_bytes(raw, decimal=",", chunk_bytes=4096)
    pd.testing.assert_frame_equal(whole, blocks)
    assert blocks["b"].iloc[2999] == "Zoë; 2999\nsecond line" and blocks["c"].iloc[3] == 3.5
    assert blocks.attrs["csv"]["encoding"] == "cp1252"


def test_options_of_normalises_words_and_empty_fields() -> None:
    assert CsvOptions.of("tab", "LATIN1", "") == CsvOptions("\t", "iso8859-1", None)
    assert CsvOptions.of("", "", "").given == {}
