"""The HTML report: self-contained, with its figures, and it renders in a browser."""

import base64
import io
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import RowDetector, write_pngs
from reconad.evaluation.report import build_report

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)


def _images(page: str) -> list[Image.Image]:
    uris = re.findall(r'<img src="([^"]+)"', page)
    out = []
    for uri in uris:
        assert uri.startswith("data:image/png;base64,"), uri[:40]
        out.append(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))))
    return out


@pytest.fixture(scope="module")
def labelled_page(small_detector, mnist01):
    x = np.concatenate([mnist01["test_ones"][:60], mnist01["test_zeros"][:60]])
    y = np.r_[np.zeros(60, int), np.ones(60, int)]
    return build_report(small_detector, x, y, n_top=6)


def test_labelled_report_is_self_contained(labelled_page):
    page = labelled_page
    assert page.startswith("<!DOCTYPE html>") and "ROC-AUC" in page and "PR-AUC" in page
    for heading in ("Loss curve", "Scores and threshold", "ROC curve", "The 6 most anomalous samples"):
        assert heading in page
    assert not re.search(r'(src|href)="(?!data:)', page), "every resource is inline"
    images = _images(page)
    assert len(images) == 4 and all(im.width > 200 and im.height > 200 for im in images)
    auc = float(re.search(r"<td>ROC-AUC</td><td>([0-9.]+)</td>", page).group(1))
    assert auc > 0.9


def test_unlabelled_and_rows(small_detector, mnist01):
    page = build_report(small_detector, mnist01["test_zeros"][:30])
    assert "ROC curve" not in page and "flagged as anomalous" in page and len(_images(page)) == 3
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(rng.normal(size=(100, 3)), columns=["temp", "pressure", "flow"])
    det = RowDetector().fit(frame)
    test = pd.concat([frame.iloc[:30], frame.iloc[:10] + 5], ignore_index=True)
    page = build_report(det, test, np.r_[np.zeros(30), np.ones(10)], n_top=5)
    assert "ROC curve" in page and len(_images(page)) == 3 and "<th>pressure</th>" in page
    with pytest.raises(ValueError, match="3 labels for 40 samples"):
        build_report(det, test, [0, 1, 0])


def test_cli_report(small_detector, mnist01, tmp_path):
    from test_cli import run_cli

    small_detector.save(tmp_path / "model")
    write_pngs(tmp_path / "ones", mnist01["test_ones"][:20])
    write_pngs(tmp_path / "zeros", mnist01["test_zeros"][:20])
    out = tmp_path / "report.html"
    r = run_cli("report", "--model", tmp_path / "model", "--normal", tmp_path / "ones",
                "--anomalous", tmp_path / "zeros", "--out", out)
    assert r.returncode == 0, r.stderr
    assert len(_images(out.read_text())) == 4
    r = run_cli("report", "--model", tmp_path / "model", "--normal", tmp_path / "ones", "--out", out)
    assert r.returncode == 2 and "--anomalous" in r.stderr and "Traceback" not in r.stderr


CHECK_SCRIPT = """<script>
window.addEventListener("load", () => {
  const imgs = Array.from(document.images);
  document.body.setAttribute("data-images", imgs.length);
  document.body.setAttribute("data-widths", imgs.map(i => i.complete ? i.naturalWidth : -1).join(","));
});
</script></body>"""


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium)")
def test_report_renders_in_chromium(labelled_page, tmp_path):
    page = tmp_path / "report.html"
    page.write_text(labelled_page.replace("</body>", CHECK_SCRIPT), encoding="utf-8")
    args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000"]
    dom = subprocess.run([*args, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=180)
    assert dom.returncode == 0, dom.stderr[-2000:]
    body = re.search(r'<body[^>]*data-images="(\d+)"[^>]*data-widths="([^"]*)"', dom.stdout)
    assert body, "the page did not finish loading in chromium"
    widths = [int(w) for w in body.group(2).split(",")]
    assert int(body.group(1)) == 4 and all(w > 200 for w in widths), widths
    shot = tmp_path / "shot.png"
    r = subprocess.run([*args, f"--screenshot={shot}", "--window-size=1200,2400", page.as_uri()],
                       capture_output=True, text=True, timeout=180)
    assert r.returncode == 0 and shot.exists(), r.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50, "the screenshot is blank"
