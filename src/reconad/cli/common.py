"""What the commands share: the consoles, printing metrics, checking folders, reading
comma-separated lists, and writing a CSV to a file or standard output."""

from __future__ import annotations

import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

console = Console()
err_console = Console(stderr=True)

MODEL_HELP = ("Model folder, registry folder (its current version), or REGISTRY@VERSION "
              "(e.g. model-registry@v0002).")
# help of the options that train and tune share
COLUMNS_HELP = "Tables, series: columns to use, comma-separated (default: all; series: all numeric)."
ENCODING_HELP = "Tables, series: CSV encoding, e.g. shift_jis (default: UTF-8, else Shift-JIS/cp932)."
STRIDE_HELP = "Series: rows between window starts (default 1)."


def print_metrics(m: dict, title: str) -> None:
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in ("roc_auc", "pr_auc", "precision", "recall", "f1", "threshold"):
        table.add_row(key, f"{m[key]:.4f}" if key != "threshold" else f"{m[key]:.6g}")
    console.print(table)
    c = m["confusion"]
    conf = Table(title="confusion matrix (rows: true)")
    conf.add_column("")
    conf.add_column("pred. normal", justify="right")
    conf.add_column("pred. anomaly", justify="right")
    conf.add_row("normal", str(c["tn"]), str(c["fp"]))
    conf.add_row("anomaly", str(c["fn"]), str(c["tp"]))
    console.print(conf)


def check_dir(path: Path, what: str) -> None:
    if not path.exists():
        raise FileNotFoundError(f"{what} folder not found: {path}")
    if not path.is_dir():
        raise ValueError(f"{what} is not a folder: {path}")


def names(text: str | None) -> list[str] | None:
    """``"a, b,c"`` -> ``["a", "b", "c"]``; None for no text."""
    return [c.strip() for c in text.split(",") if c.strip()] if text else None


def write_or_print(text: str, out: Path | None, summary: str) -> None:
    """``text`` to the file ``out`` (atomically, then ``summary`` on the console), or to
    standard output."""
    from reconad._atomic import write_text

    if out is None:
        sys.stdout.write(text)
    else:
        write_text(out, text)
        console.print(f"wrote {out}: {summary}", highlight=False, soft_wrap=True)
