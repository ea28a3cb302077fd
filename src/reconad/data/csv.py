"""Reading sensor CSV files as plants write them: ``,`` ``;`` or tab separated, UTF-8 or
Shift-JIS (cp932), headers in Japanese, a datetime column.

``read_csv`` returns a ``pandas.DataFrame``; the datetime column (when one is found)
becomes the index. Encoding: ``encoding=None`` tries ``utf-8`` (with or without a BOM),
then ``cp932`` (Windows Shift-JIS, a superset of ``shift_jis``); a named encoding is used
as given. Delimiter: ``delimiter=None`` picks among ``,``, ``;`` and tab the one that
splits the header and the first rows into the same number of fields (most fields wins).
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import pandas as pd

DELIMITERS = (",", ";", "\t")
FALLBACK_ENCODINGS = ("utf-8-sig", "cp932")
_SNIFF_LINES = 20


def decode(raw: bytes, encoding: str | None = None) -> tuple[str, str]:
    """Decode file bytes; returns ``(text, encoding used)``."""
    if encoding is not None:
        try:
            return raw.decode(encoding), encoding
        except LookupError:
            raise ValueError(f"unknown encoding {encoding!r}") from None
        except UnicodeDecodeError as exc:
            raise ValueError(f"the file is not valid {encoding}: {exc}; try encoding=None to "
                             f"detect it, or 'cp932' for Japanese Windows files") from None
    for enc in FALLBACK_ENCODINGS:
        try:
            return raw.decode(enc), ("utf-8" if enc == "utf-8-sig" else enc)
        except UnicodeDecodeError:
            continue
    raise ValueError("cannot decode the file as UTF-8 or Shift-JIS (cp932); pass encoding=")


def sniff_delimiter(text: str) -> str:
    """The delimiter among ``,`` ``;`` tab that splits the first lines most consistently."""
    lines = [ln for ln in text.splitlines()[:_SNIFF_LINES] if ln.strip()]
    if not lines:
        raise ValueError("the file is empty")
    best, best_fields = ",", 1
    for d in DELIMITERS:
        counts = [ln.count(d) for ln in lines]
        if counts[0] > 0 and all(c == counts[0] for c in counts):
            if counts[0] + 1 > best_fields:
                best, best_fields = d, counts[0] + 1
    if best_fields == 1:  # nothing consistent: the one most present in the header
        best = max(DELIMITERS, key=lambda d: lines[0].count(d))
    return best


def find_datetime_column(frame: pd.DataFrame) -> str | None:
    """Name of the first column that parses as datetimes (by dtype, name, or content)."""
    for col in frame.columns:
        s = frame[col]
        if pd.api.types.is_datetime64_any_dtype(s):
            return col
    for col in frame.columns:
        s = frame[col]
        if not pd.api.types.is_numeric_dtype(s):
            sample = s.dropna().astype(str).head(50)
            if sample.empty:
                continue
            parsed = pd.to_datetime(sample, errors="coerce", format="mixed")
            if parsed.notna().mean() >= 0.9:
                return col
    return None


def read_csv(path: str | os.PathLike, encoding: str | None = None, delimiter: str | None = None,
             datetime_column: str | None = None, parse_dates: bool = True) -> pd.DataFrame:
    """Read a sensor CSV file into a DataFrame (datetime index when a datetime column is found).

    Parameters
    ----------
    path : file path
    encoding : str or None
        ``"utf-8"``, ``"shift_jis"``, ``"cp932"``, ...; None detects (UTF-8, then cp932).
    delimiter : str or None
        ``","``, ``";"`` or ``"\\t"``; None detects.
    datetime_column : str or None
        The column with timestamps; None finds the first column that parses as dates.
    parse_dates : bool
        False keeps all columns as read (no index).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"CSV file not found: {path}")
    if path.is_dir():
        raise ValueError(f"expected a CSV file, got a folder: {path}")
    return read_csv_bytes(path.read_bytes(), str(path), encoding=encoding, delimiter=delimiter,
                          datetime_column=datetime_column, parse_dates=parse_dates)


def read_csv_bytes(raw: bytes, name: str = "the CSV", encoding: str | None = None, delimiter: str | None = None,
                   datetime_column: str | None = None, parse_dates: bool = True) -> pd.DataFrame:
    """``read_csv`` for the bytes of a CSV file (an upload); ``name`` appears in errors."""
    path = name
    if not raw.strip():
        raise ValueError(f"{path} is empty")
    text, used = decode(raw, encoding)
    sep = delimiter if delimiter is not None else sniff_delimiter(text)
    try:
        frame = pd.read_csv(io.StringIO(text), sep=sep)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise ValueError(f"cannot parse {path} as CSV (delimiter {sep!r}): {exc}") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    frame.attrs.update({"encoding": used, "delimiter": sep, "source": str(path)})
    if not parse_dates:
        return frame
    col = datetime_column
    if col is not None and col not in frame.columns:
        raise ValueError(f"datetime column {col!r} not in {path}; columns: {', '.join(frame.columns)}")
    if col is None:
        col = find_datetime_column(frame)
    if col is not None:
        stamps = pd.to_datetime(frame[col], errors="coerce", format="mixed")
        if stamps.isna().any():
            bad = int(stamps.isna().sum())
            raise ValueError(f"{bad} value(s) in datetime column {col!r} of {path} are not dates")
        frame = frame.drop(columns=[col]).set_index(pd.DatetimeIndex(stamps, name=col))
    return frame
