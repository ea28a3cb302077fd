"""Batch scoring on a local Dask cluster of 2 worker processes: the scores equal those
computed in this process, row for row."""

import importlib
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

dd = pytest.importorskip("dask.dataframe")
db = pytest.importorskip("dask.bag")
distributed = pytest.importorskip("distributed")

from typer.testing import CliRunner  # noqa: E402

from reconad.scale import dask_scoring
from reconad.scale import frames as frame_scoring  # noqa: E402
from reconad.cli import app  # noqa: E402
from reconad.ops.loading import load_model  # noqa: E402
from reconad.ops.registry import ModelRegistry, model_version  # noqa: E402

from conftest import write_pngs  # noqa: E402
from standin_detectors import RowDetector, WindowDetector  # noqa: E402


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as c, distributed.Client(c) as client:
        client.run(importlib.import_module, "standin_detectors")  # registers the stand-ins
        yield c


def plain_text(frame):
    """Dask hands text back in pandas' NA-flavoured string dtype; compare it as the default one."""
    return frame.astype({c: "str" for c in frame.columns if pd.api.types.is_string_dtype(frame[c])})


def read_scores(folder):
    files = sorted(folder.glob("*.parquet"))
    return plain_text(pd.concat([pd.read_parquet(f) for f in files], ignore_index=True))


def without_version(frame, version):
    """The scores without their model_version column, after checking it holds ``version``."""
    assert (frame["model_version"] == version).all(), frame["model_version"].unique()
    return frame.drop(columns="model_version")


def split_at(frame, cuts):
    """A Dask DataFrame whose partitions end at the given row positions."""
    return dd.from_pandas(frame, npartitions=1, sort=True).repartition(
        divisions=[0, *sorted(cuts), len(frame) - 1])


def test_table_scores_equal_in_process(cluster, tmp_path):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(1000, 4)), columns=list("abcd"))
    frame.insert(0, "part_id", [f"p{i:04d}" for i in range(len(frame))])
    det = RowDetector().fit(frame[list("abcd")].iloc[:500])
    det.save(tmp_path / "model")

    out = dask_scoring.score_to_parquet(tmp_path / "model", split_at(frame, [100, 101, 555, 870]),
                                        tmp_path / "scores", scheduler=cluster.scheduler_address)
    got = read_scores(out)
    want = frame_scoring.score_table(det, frame)
    assert list(got.columns) == ["part_id", "score", "label", "model_version"]
    got = without_version(got, model_version(tmp_path / "model"))
    pd.testing.assert_frame_equal(got, want.reset_index(drop=True), check_exact=True)
    assert 0 < want["label"].sum() < len(frame)


def series_frame(lengths, seed=0):
    rng = np.random.default_rng(seed)
    parts = []
    for m, n in enumerate(lengths):
        x = np.cumsum(rng.normal(size=(n, 3)), axis=0) * 0.1
        parts.append(pd.DataFrame({"machine": f"pump-{m}", "t": np.arange(n), "x": x[:, 0], "y": x[:, 1],
                                   "z": x[:, 2]}))
    return pd.concat(parts, ignore_index=True)


@pytest.mark.parametrize("stride", [1, 3])
@pytest.mark.parametrize("layout", ["by_machine", "interleaved"])
def test_series_split_anywhere_scores_equal_in_process(cluster, tmp_path, stride, layout):
    frame = series_frame([157, 93, 40, 8])
    if layout == "interleaved":  # files of time slices, each with every machine
        frame = frame.sort_values(["t", "machine"], kind="stable").reset_index(drop=True)
    det = WindowDetector(window=8, stride=stride).fit(frame[["x", "y", "z"]])
    det.save(tmp_path / "model")
    rng = np.random.default_rng(stride)
    cuts = set(rng.choice(np.arange(1, len(frame) - 1), size=25, replace=False)) | {1, 2, 3, 150, 151}
    data = split_at(frame, cuts)
    assert data.npartitions > 25

    scores = dask_scoring.score_dask(tmp_path / "model", data, id_column="machine",
                                     features=["x", "y", "z"])
    got = plain_text(scores.compute().reset_index(drop=True))
    want = frame_scoring.score_series(det, frame, id_column="machine", features=["x", "y", "z"])
    assert list(got.columns) == ["machine", "t", "score", "label", "model_version"]
    got = without_version(got, model_version(tmp_path / "model"))
    pd.testing.assert_frame_equal(got, want.reset_index(drop=True), check_exact=True)
    # every machine's scores are those of its whole series scored alone
    for m, rows in frame.groupby("machine").groups.items():
        alone = det.decision_function(frame.loc[rows, ["x", "y", "z"]])
        np.testing.assert_array_equal(want.loc[rows, "score"].to_numpy(), alone)


def test_one_series_without_id_and_model_loaded_once_per_worker(cluster, tmp_path):
    frame = series_frame([300])[["x", "y", "z"]]
    det = WindowDetector(window=12).fit(frame)
    det.save(tmp_path / "model")
    with distributed.Client(cluster.scheduler_address) as client:
        client.run(lambda: frame_scoring.LOADS.update(count=0))
        dask_scoring.score_to_parquet(tmp_path / "model", split_at(frame, range(10, 300, 23)),
                                      tmp_path / "scores", scheduler=cluster.scheduler_address)
        loads = client.run(lambda: frame_scoring.LOADS["count"])
    assert sum(loads.values()) >= 1 and all(n <= 1 for n in loads.values()), loads
    got = read_scores(tmp_path / "scores")
    np.testing.assert_array_equal(got["score"].to_numpy(), det.decision_function(frame))


def test_image_bag_scores_equal_in_process(cluster, tmp_path, small_detector, mnist01):
    paths = [str(p) for p in write_pngs(tmp_path / "imgs", np.concatenate(
        [mnist01["test_ones"][:30], mnist01["test_zeros"][:30]]))]
    small_detector.save(tmp_path / "model")
    bag = db.from_sequence(paths, partition_size=7)
    out = dask_scoring.score_to_parquet(tmp_path / "model", bag, tmp_path / "scores",
                                        scheduler=cluster.scheduler_address)
    got = without_version(read_scores(out), model_version(tmp_path / "model"))
    want = plain_text(frame_scoring.score_images(small_detector, paths))
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    assert got["score"].iloc[30:].mean() > got["score"].iloc[:30].mean()


def test_cli_scores_images_on_dask(cluster, tmp_path, small_detector, mnist01):
    write_pngs(tmp_path / "imgs", mnist01["test_zeros"][:20])
    small_detector.save(tmp_path / "model")
    r = subprocess.run([sys.executable, "-m", "reconad.cli", "score", "--model", tmp_path / "model",
                        "--input", str(tmp_path / "imgs" / "*.png"), "--output", tmp_path / "out",
                        "--engine", "dask", "--scheduler", cluster.scheduler_address],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    got = read_scores(tmp_path / "out")
    assert len(got) == 20 and list(got.columns) == ["path", "score", "label", "model_version"]
    np.testing.assert_array_equal(got["score"].to_numpy(),
                                  small_detector.decision_function(sorted(got["path"])))


def test_bad_input_is_named_before_any_work(tmp_path, small_detector):
    frame = series_frame([50])
    det = WindowDetector(window=8).fit(frame[["x", "y", "z"]])
    det.save(tmp_path / "model")
    data = dd.from_pandas(frame, npartitions=2)
    with pytest.raises(ValueError, match="no id column 'pump'"):
        dask_scoring.score_dask(tmp_path / "model", data, id_column="pump")
    with pytest.raises(ValueError, match="no column.* w .*that the model scores"):
        dask_scoring.score_dask(tmp_path / "model", data, id_column="machine", features=["x", "w"])
    with pytest.raises(ValueError, match="no Parquet files match"):
        dask_scoring.score_to_parquet(tmp_path / "model", str(tmp_path / "none-*.parquet"), tmp_path / "out")
    with pytest.raises(TypeError, match="bag of image paths needs an image detector"):
        dask_scoring.score_dask(tmp_path / "model", db.from_sequence(["a.png"]))
    small_detector.save(tmp_path / "image-model")
    r = subprocess.run([sys.executable, "-m", "reconad.cli", "score", "--model", tmp_path / "image-model",
                        "--input", str(tmp_path / "none-*.png"), "--output", tmp_path / "out",
                        "--engine", "dask"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "no image files" in r.stderr, r.stderr
    for args, message in [(["--input", "x*.png"], "--output"), (["--engine", "spark", "x.png"], "engine")]:
        result = CliRunner().invoke(app, ["score", "--model", str(tmp_path / "image-model"), *args])
        assert isinstance(result.exception, ValueError) and message in str(result.exception)


def test_real_table_and_series_detectors_score_equal_in_process(cluster, tmp_path):
    from reconad import SeriesDetector, TabularDetector

    rng = np.random.default_rng(1)
    table = pd.DataFrame(rng.normal(size=(600, 4)), columns=list("abcd"))
    tab = TabularDetector(epochs=2, verbose=0).fit(table.iloc[:300])
    tab.save(tmp_path / "table-model")
    got = read_scores(dask_scoring.score_to_parquet(tmp_path / "table-model", split_at(table, [50, 51, 333]),
                                                    tmp_path / "table-scores",
                                                    scheduler=cluster.scheduler_address))
    want = frame_scoring.score_table(tab, table)
    # a one-row partition goes through the network as a batch of one: float32 kernels may
    # round the last bit differently from a full batch, so equal to float32 precision
    np.testing.assert_allclose(got["score"].to_numpy(), want["score"].to_numpy(), rtol=1e-6, atol=0)
    np.testing.assert_array_equal(got["label"].to_numpy(), want["label"].to_numpy())

    frame = series_frame([157, 93, 40])
    ser = SeriesDetector(window=8, width=4, epochs=2, verbose=0).fit(frame[["x", "y", "z"]].iloc[:150])
    ser.save(tmp_path / "series-model")
    cuts = {1, 2, 60, 151, 152, 200, 251}
    scores = dask_scoring.score_dask(tmp_path / "series-model", split_at(frame, cuts), id_column="machine",
                                     features=["x", "y", "z"])
    got = plain_text(scores.compute().reset_index(drop=True))
    want = frame_scoring.score_series(ser, frame, id_column="machine", features=["x", "y", "z"])
    np.testing.assert_allclose(got["score"].to_numpy(), want["score"].to_numpy(), rtol=1e-6, atol=0)
    for m, rows in frame.groupby("machine").groups.items():
        alone = ser.decision_function(frame.loc[rows, ["x", "y", "z"]].to_numpy())
        np.testing.assert_allclose(want.loc[rows, "score"].to_numpy(), alone, rtol=1e-6)


def test_registry_versions_on_dask(cluster, tmp_path):
    """A registry folder scores with its current version, REGISTRY@VERSION with that version;
    every row names it."""
    rng = np.random.default_rng(2)
    frame = pd.DataFrame(rng.normal(size=(200, 3)), columns=list("abc"))
    reg = ModelRegistry(tmp_path / "registry")
    for shift in (0.0, 1.0):
        RowDetector().fit(frame + shift).save(tmp_path / f"m{shift}")
        reg.register(tmp_path / f"m{shift}")
    reg.promote("v0002")
    data = split_at(frame, [70, 140])
    current = read_scores(dask_scoring.score_to_parquet(tmp_path / "registry", data, tmp_path / "cur",
                                                        scheduler=cluster.scheduler_address))
    first = read_scores(dask_scoring.score_to_parquet(f"{tmp_path / 'registry'}@v0001", data, tmp_path / "v1",
                                                      scheduler=cluster.scheduler_address))
    want = {v: frame_scoring.score_table(load_model(f"{tmp_path / 'registry'}@{v}"), frame)["score"].to_numpy()
            for v in ("v0001", "v0002")}
    np.testing.assert_array_equal(without_version(current, "v0002")["score"].to_numpy(), want["v0002"])
    np.testing.assert_array_equal(without_version(first, "v0001")["score"].to_numpy(), want["v0001"])
    assert not np.array_equal(want["v0001"], want["v0002"])
