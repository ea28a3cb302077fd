"""Batch scoring of data larger than memory on a Dask cluster.

``score_dask(model, data)`` maps a saved detector over a Dask DataFrame (a table: one score
per row; series: one score per time step, each partition given the rows just before and
after it of the same machine so that no step loses the windows around it) or over a Dask
bag of image paths, and returns a lazy Dask DataFrame of scores in the input's order.
``score_to_parquet`` writes it as Parquet partitions, starting a local cluster when no
scheduler address is given. The model is named as everywhere (a model folder, a registry
folder for its current version, or ``REGISTRY@VERSION``, see :mod:`reconad.ops.loading`);
it is resolved once, so every worker scores with the same version even when the registry
moves on meanwhile, and each worker loads it once
(:func:`reconad.scale.frames.load_cached`). Every result row carries the ``model_version``.

Requires the ``scale`` extra: ``pip install 'reconad[scale]'``.
"""

from __future__ import annotations

import glob
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pandas as pd

from reconad.scale import frames as frame_scoring
from reconad._atomic import atomic_dir
from reconad.data.images import IMAGE_SUFFIXES
from reconad.ops.loading import declared_kind, load_model, resolve


def _dask():
    try:
        import dask
        import dask.bag as db
        import dask.dataframe as dd
    except ImportError:  # pragma: no cover - depends on the installation
        raise ImportError("batch scoring on Dask needs the 'scale' extra: pip install 'reconad[scale]'") from None
    return dask, dd, db


def _set_worker_threads() -> None:
    """One torch thread per Dask thread of this worker, so workers do not oversubscribe."""
    try:
        from distributed import get_worker

        threads = get_worker().state.nthreads
    except (ImportError, ValueError, AttributeError):
        return
    import torch

    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def _detector(model: str):
    _set_worker_threads()
    return frame_scoring.load_cached(model)


def _versioned(scores: pd.DataFrame, det) -> pd.DataFrame:
    """``scores`` with a ``model_version`` column (the detector's version, on every row)."""
    scores["model_version"] = pd.Series(det.model_version_, index=scores.index, dtype="string")
    return scores


# --- tables -------------------------------------------------------------------------
def _score_table_part(frame: pd.DataFrame, model: str, features) -> pd.DataFrame:
    det = _detector(model)
    return _versioned(frame_scoring.score_table(det, frame, features=features), det)


# --- series -------------------------------------------------------------------------
def _edges(frame: pd.DataFrame, id_column: str | None, rows: int) -> dict:
    """The first and last ``rows`` rows of each machine in this partition, and its row
    count per machine."""
    keys = frame[id_column] if id_column else pd.Series(0, index=frame.index)
    grouped = frame.groupby(keys.to_numpy(), sort=False, dropna=False)
    return {"head": grouped.head(rows), "tail": grouped.tail(rows), "counts": grouped.size().to_dict()}


def _with_key(frame: pd.DataFrame, id_column: str | None) -> pd.Series:
    return frame[id_column] if id_column else pd.Series(0, index=frame.index)


def _contexts(edges: list[dict], id_column: str | None, before: int, after: int, stride: int) -> list[tuple]:
    """For each partition: the rows of the same machines just before it (enough for
    ``before`` steps, extended so the first window starts where the whole series' windows
    start) and just after it (``after`` steps)."""
    n = len(edges)
    offsets: dict = {}
    lefts: list[pd.DataFrame] = []
    tail = edges[0]["tail"].iloc[:0]
    for e in edges:
        rows_of = tail.groupby(_with_key(tail, id_column).to_numpy(), sort=False, dropna=False).indices
        picked = []
        for key in e["counts"]:
            start = offsets.get(key, 0)
            first = max(0, (start - before) // stride * stride)
            take = start - first
            if take:
                picked.append(rows_of[key][-take:])
        lefts.append(tail.iloc[np.concatenate(picked)] if picked else tail.iloc[:0])
        tail = pd.concat([tail, e["tail"]])
        tail = tail.groupby(_with_key(tail, id_column).to_numpy(), sort=False, dropna=False).tail(before + stride)
        for key, count in e["counts"].items():
            offsets[key] = offsets.get(key, 0) + count
    rights: list[pd.DataFrame] = [None] * n
    head = edges[-1]["head"].iloc[:0]
    for i in range(n - 1, -1, -1):
        keys = set(edges[i]["counts"])
        rights[i] = head[np.isin(_with_key(head, id_column).to_numpy(), list(keys))] if keys else head.iloc[:0]
        head = pd.concat([edges[i]["head"], head])
        head = head.groupby(_with_key(head, id_column).to_numpy(), sort=False, dropna=False).head(after)
    return list(zip(lefts, rights))


def _score_series_part(frame: pd.DataFrame, left: pd.DataFrame, right: pd.DataFrame, model: str,
                       id_column: str | None, features) -> pd.DataFrame:
    chunk = pd.concat([left, frame, right])
    keep = np.r_[np.zeros(len(left), bool), np.ones(len(frame), bool), np.zeros(len(right), bool)]
    det = _detector(model)
    return _versioned(frame_scoring.score_series(det, chunk, id_column=id_column, features=features,
                                                 keep=keep), det)


# --- images -------------------------------------------------------------------------
def _score_images_part(paths: Sequence[str], model: str) -> pd.DataFrame:
    det = _detector(model)
    return _versioned(frame_scoring.score_images(det, list(paths)), det)


# --- public -------------------------------------------------------------------------
def _check_model(model) -> tuple[str, object]:
    """A name of the model that every worker resolves to the same version, and the model
    (loaded here, so a missing or damaged model fails before any work)."""
    name = resolve(model).name
    return name, load_model(name)


def score_dask(model: str | os.PathLike, data, *, id_column: str | None = None,
               features: Sequence[str] | None = None):
    """Scores of ``data`` by the detector ``model`` names (a model folder, a registry folder
    or ``REGISTRY@VERSION``), as a lazy Dask DataFrame in the order of ``data``.

    ``data`` is a Dask DataFrame (a table for a tabular detector; for a series detector one
    or several series, rows in time order, machines told apart by ``id_column``; a series
    may be split across partitions anywhere) or a Dask bag of image paths. The result
    keeps the non-feature columns and adds ``score``, ``label`` and ``model_version``
    (``path``, ``score``, ``label``, ``model_version`` for images). For series the first pass, which reads the first and last rows
    of every partition, runs during this call; the scoring itself runs when the result is
    computed or written."""
    dask, dd, db = _dask()
    path, det = _check_model(model)
    kind = declared_kind(det)
    if isinstance(data, db.Bag):
        if kind != "image":
            raise TypeError(f"a bag of image paths needs an image detector; {path} holds a "
                            f"{type(det).__name__}")
        parts = data.to_delayed()
        meta = _versioned(frame_scoring.score_images(det, []), det)
        return dd.from_delayed([dask.delayed(_score_images_part)(p, path) for p in parts], meta=meta,
                               verify_meta=False)
    if not isinstance(data, dd.DataFrame):
        raise TypeError(f"data must be a Dask DataFrame or a Dask bag of image paths, got {type(data).__name__}")
    if kind == "image":
        raise TypeError("an image detector scores a Dask bag of image paths, not a DataFrame")
    empty = data._meta
    if kind == "table":
        meta = _versioned(frame_scoring.score_table(det, empty, features=features), det)
        return data.map_partitions(_score_table_part, path, features, meta=meta)
    if id_column is not None and id_column not in empty.columns:
        raise ValueError(f"input has no id column {id_column!r}; columns are {', '.join(map(str, empty.columns))}")
    frame_scoring.feature_columns(det, empty, features, exclude=[id_column] if id_column else [])
    window = int(det.window)
    stride = int(getattr(det, "stride", 1) or 1)
    parts = data.to_delayed()
    edges = dask.compute(*[dask.delayed(_edges)(p, id_column, window + stride) for p in parts])
    contexts = _contexts(list(edges), id_column, before=window - 1, after=window + stride - 1,
                         stride=stride)
    meta = _versioned(frame_scoring.score_series(det, empty, id_column=id_column, features=features), det)
    # the partitions again, read afresh, so none is held in memory between the two passes
    parts = data.to_delayed()
    return dd.from_delayed([dask.delayed(_score_series_part)(p, left, right, path, id_column, features)
                            for p, (left, right) in zip(parts, contexts)], meta=meta, verify_meta=False)


def read_input(pattern: str, kind: str, partition_size: int = 256):
    """Files matching ``pattern`` (a glob, a folder or a file): for ``kind`` ``"image"``
    image files as a Dask bag of paths, else Parquet files as a Dask DataFrame."""
    dask, dd, db = _dask()
    p = Path(pattern)
    files = sorted(str(f) for f in p.iterdir()) if p.is_dir() else sorted(glob.glob(pattern))
    if kind == "image":
        files = [f for f in files if Path(f).suffix.lower() in IMAGE_SUFFIXES]
        if not files:
            raise ValueError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) match {pattern}")
        return db.from_sequence(files, partition_size=partition_size)
    files = [f for f in files if f.endswith(".parquet") or Path(f).is_dir()]
    if not files:
        raise ValueError(f"no Parquet files match {pattern}")
    return dd.read_parquet(files)


def _part_name(i: int) -> str:
    return f"part.{i:06d}.parquet"  # sorts by name in the input's order


@contextmanager
def client(scheduler: str | None = None, workers: int | None = None) -> Iterator:
    """A Dask client: connected to ``scheduler`` (an address), or to a new local cluster of
    ``workers`` processes with one thread each (default: one per CPU core)."""
    _dask()
    from distributed import Client, LocalCluster

    if scheduler:
        with Client(scheduler) as c:
            yield c
        return
    with LocalCluster(n_workers=workers or os.cpu_count() or 1, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as c:
        yield c


def score_to_parquet(model: str | os.PathLike, data, output: str | os.PathLike, *,
                     scheduler: str | None = None, workers: int | None = None,
                     id_column: str | None = None, features: Sequence[str] | None = None) -> Path:
    """Score ``data`` (a Dask DataFrame, a Dask bag of image paths, or a glob of Parquet or
    image files) with the model ``model`` names and write the scores as Parquet partitions to
    the folder ``output`` (written under a temporary name, then renamed). Runs on the
    cluster at ``scheduler``, or on a local one of ``workers`` processes."""
    path, det = _check_model(model)
    output = Path(output)
    if output.exists() and not output.is_dir():
        raise ValueError(f"output {output} exists and is not a folder")
    if isinstance(data, (str, os.PathLike)):
        data = read_input(str(data), declared_kind(det))
    with client(scheduler, workers):
        scores = score_dask(path, data, id_column=id_column, features=features)
        with atomic_dir(output) as tmp:
            scores.to_parquet(str(tmp), write_index=False, name_function=_part_name)
    return output
