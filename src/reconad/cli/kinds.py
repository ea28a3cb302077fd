"""The three kinds of data on the command line: which detector trains each, which models
the catalogue offers for it, how ``--kind auto`` decides, and how CSV files are read.

``--kind auto`` decides from the training input, and says what it decided and why:

* ``--mvtec ROOT``, folders or image files: ``image``;
* delimited text files (``.csv``, ``.tsv``, ``.txt``): ``series`` when ``--window`` is
  given or the (first) file has a time column (a column of dates and times), else
  ``table``: rows are independent samples, such as one row per part.

Commands that load a model (score, evaluate, report, export, serve, drift, retrain,
monitor) never guess: the detector declares its kind.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from reconad.data.images import IMAGE_SUFFIXES
from reconad.models import catalogue

TEXT_SUFFIXES = (".csv", ".tsv", ".txt")
KIND_CHOICES = ("auto", *catalogue.KINDS)


def detector_class(kind: str):
    """The detector that trains models of ``kind``."""
    from reconad.detectors import ImageDetector, SeriesDetector, TabularDetector

    classes = {cls.kind: cls for cls in (ImageDetector, SeriesDetector, TabularDetector)}
    if kind not in classes:
        raise ValueError(f"unknown kind {kind!r}; choose one of {', '.join(KIND_CHOICES)}")
    return classes[kind]


def default_model(kind: str) -> str:
    """The model a detector of ``kind`` trains when none is named (its ``model`` default)."""
    if kind not in catalogue.DEFAULT_MODELS:
        raise ValueError(f"unknown kind {kind!r}; choose one of {', '.join(KIND_CHOICES)}")
    return catalogue.DEFAULT_MODELS[kind]


def models_help(kinds: tuple[str, ...] = catalogue.KINDS) -> str:
    """The catalogue's models per kind, the default marked, for ``--model``'s help."""
    def listed(kind):
        default = default_model(kind)
        return ", ".join(f"{n} (default)" if n == default else n for n in catalogue.names(kind))

    return "; ".join(f"{kind}: {listed(kind)}" for kind in kinds)


def check_model(kind: str, name: str | None) -> str:
    """``name`` (default: the kind's default model) when the catalogue has it for ``kind``;
    else a ``ValueError`` that lists the kind's models."""
    name = name or default_model(kind)
    if name not in catalogue.names(kind):
        raise ValueError(f"unknown {kind} model {name!r}; the {kind} models are "
                         f"{', '.join(catalogue.names(kind))}")
    return name


def guess_kind(kind: str, paths: list[Path], mvtec: Path | None, window_given: bool,
               encoding: str | None = None) -> tuple[str, str]:
    """``(kind, reason)``: ``kind`` itself unless it is ``"auto"``; then the rule of the
    module docstring, with the reason in words."""
    if kind not in KIND_CHOICES:
        raise ValueError(f"unknown --kind {kind!r}; choose one of {', '.join(KIND_CHOICES)}")
    if kind != "auto":
        return kind, "--kind " + kind
    if mvtec is not None:
        return "image", "--mvtec names a folder of images"
    if not paths:
        raise ValueError("no training data: give --normal (folders, image files or CSV files) or --mvtec ROOT")
    for p in paths:
        if not p.exists():
            what = "CSV file" if p.suffix.lower() in TEXT_SUFFIXES else "normal-image folder"
            raise FileNotFoundError(f"{what} not found: {p}")
    if all(p.is_dir() for p in paths):
        return "image", f"{paths[0]} is a folder of images"
    if all(p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES for p in paths):
        return "image", f"{paths[0]} is an image file"
    if not all(p.is_file() and p.suffix.lower() in TEXT_SUFFIXES for p in paths):
        raise ValueError("--normal mixes kinds of input: give folders or image files (images), or "
                         "CSV files (tables, series), or say --kind")
    if window_given:
        return "series", "--window was given"
    from reconad.data.csv import find_datetime_column

    time_column = find_datetime_column(read_csv(paths[0], encoding, parse_dates=False))
    if time_column is not None:
        return "series", f"{paths[0].name} has a time column {time_column!r}"
    return "table", (f"{paths[0].name} has no time column, so each row is taken as one sample; "
                     "say --kind series or give --window for a sensor series")


def read_csv(path: Path, encoding: str | None, parse_dates: bool) -> pd.DataFrame:
    """A delimited text file as a DataFrame: encoding detected (UTF-8, then Shift-JIS) unless
    given, delimiter detected; with ``parse_dates`` the time column becomes the index."""
    from reconad.data import csv

    return csv.read_csv(path, encoding=encoding, parse_dates=parse_dates)


def read_rows(det, path: Path, encoding: str | None = None,
              label_column: str | None = None) -> tuple[pd.DataFrame, "pd.Series | None"]:
    """The rows of a CSV file for a table or series detector, and its label column (popped)
    when ``label_column`` is named. A table is read with the model's text encoding unless
    ``encoding`` is given; a series keeps its time column as the index."""
    if encoding is None and det.kind == "table":
        encoding = det.encoding
    frame = read_csv(path, encoding, parse_dates=det.kind == "series")
    labels = None
    if label_column is not None:
        if label_column not in frame.columns:
            raise ValueError(f"label column {label_column!r} not in {path}; columns: "
                             f"{', '.join(map(str, frame.columns))}")
        labels = frame.pop(label_column).to_numpy().astype(int)
    if det.kind == "series":
        fitted = list(det.columns_)
        frame = frame[fitted] if set(fitted) <= set(frame.columns) else frame
    return frame, labels
