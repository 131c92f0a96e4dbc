"""Reading a landing file: CSV values as text, Parquet values in the file's own types.

What a reader would otherwise guess is decided here, once:

- Encoding: UTF-8, with or without a byte-order mark, or UTF-16 with its byte-order mark. Anything else
  (Latin-1, Windows-1252, UTF-16 without a mark) is an error naming the line and column of the first bad byte:
  a wrong guess would change names silently.
- Separator: comma, semicolon or tab, whichever the header line holds most of. Decimal commas are not read
  as numbers (``9,99`` in a price is a type failure in quarantine, never 999 or 9.99 by guess).
- Rows: a record with more or fewer fields than the header is not the file's fault; it is kept aside with
  its fields in ``RAGGED_FIELDS`` so that validation quarantines it with the reason, and the other rows go
  on. A blank line is no row. A quote left open swallows the rest of the file, so that is an error naming
  the line where the record began.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import unicodedata
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

RAGGED_FIELDS = "_ragged_fields"  # a reader's column: the fields of a row whose count differs from the header's
SEPARATORS = (",", ";", "\t")


class RawInputError(ValueError):
    """A raw file that cannot be loaded at all; the message names the file and, where one is at fault, the column."""


def read_landing_file(path: Path) -> pd.DataFrame:
    """A landing file as it is, every CSV value still text (types are checked row by row later).

    Rows whose field count is wrong carry their fields, as JSON, in ``RAGGED_FIELDS`` and nulls elsewhere.
    """
    if path.stat().st_size == 0:
        raise RawInputError(f"{path}: the file is empty (not even a header row)")
    if path.suffix == ".parquet":
        try:
            # Integer columns with a null stay Python ints: the pandas default, floats, would turn id 1 into 1.0.
            return pq.read_table(path).to_pandas(integer_object_nulls=True)
        except Exception as error:  # pyarrow raises several types for corrupt files
            raise RawInputError(f"{path}: not a readable Parquet file ({error})") from error
    text = _decode(path, path.read_bytes())
    if not text.strip():
        raise RawInputError(f"{path}: the file is empty (not even a header row)")
    return _parse_csv(path, text, _separator(text))


def _separator(text: str) -> str:
    header = next(line for line in text.splitlines() if line.strip())  # blank lines before the header are no rows
    return max(SEPARATORS, key=header.count)  # ties (a one-column header) go to the comma, listed first


def _decode(path: Path, raw: bytes) -> str:
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            text = raw.decode("utf-16")
        except UnicodeDecodeError as error:
            raise RawInputError(f"{path}: starts as UTF-16 but is not valid UTF-16 ({error.reason})") from error
    else:
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as error:
            line_start = raw.rfind(b"\n", 0, error.start) + 1
            line = raw[: error.start].count(b"\n") + 1
            where = f"line {line}" + _column_at(raw, line_start, error.start)
            raise RawInputError(
                f"{path}: not valid UTF-8 (byte 0x{raw[error.start]:02x} on {where}); save the file as UTF-8"
            ) from error
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        raise RawInputError(
            f"{path}: NUL characters from line {line} on: UTF-16 without a byte-order mark, UTF-32, or not text; "
            "save the file as UTF-8"
        )
    return text


def _column_at(raw: bytes, line_start: int, position: int) -> str:
    """Where byte ``position`` is, as ``", column <name>"``; empty when the header does not name that field."""
    header_text = raw.split(b"\n", 1)[0].decode("utf-8-sig", errors="replace")
    separator = _separator(header_text) if header_text.strip() else ","
    header = next(csv.reader([header_text], delimiter=separator), [])
    before = raw[line_start:position].decode("utf-8", errors="replace")
    index = len(next(csv.reader([before], delimiter=separator), [""])) - 1
    return f", column {header[index].strip()}" if 0 <= index < len(header) else ""


def _parse_csv(path: Path, text: str, separator: str) -> pd.DataFrame:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=separator, strict=True)
    records: list[list[str | None]] = []
    ragged: dict[int, str] = {}
    header: list[str] | None = None
    while True:
        first_line = reader.line_num + 1
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as error:
            raise RawInputError(
                f"{path}: not a readable CSV file: the record starting on line {first_line} ({error}); "
                "a quote inside a value must be doubled"
            ) from error
        if not fields or (len(fields) == 1 and not fields[0].strip()):
            continue  # a blank line
        if header is None:
            header = [unicodedata.normalize("NFC", name.strip()) for name in fields]
            repeated = sorted({name for name in header if header.count(name) > 1})
            if repeated:
                raise RawInputError(f"{path}: column(s) {', '.join(repeated)} appear more than once in the header")
            continue
        if len(fields) == len(header):
            records.append([value if value != "" else None for value in fields])
        else:
            ragged[len(records)] = json.dumps(fields, ensure_ascii=False)
            records.append([None] * len(header))
    assert header is not None  # the text is not blank, so some line held fields
    frame = pd.DataFrame(records, columns=header, dtype=object)
    if ragged:
        frame[RAGGED_FIELDS] = pd.Series(ragged, dtype=object).reindex(frame.index)
    return frame
