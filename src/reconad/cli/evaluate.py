"""``reconad evaluate``: metrics and plots on labelled images, a labelled sensor series or
labelled table rows."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from reconad.cli import kinds
from reconad.cli.common import MODEL_HELP, check_dir, console, print_metrics


def evaluate(
    model: Path = typer.Option(..., help=MODEL_HELP),
    out: Path = typer.Option(..., help="Output folder for metrics and plots."),
    normal: Optional[Path] = typer.Option(None, help="Images: folder of normal images."),
    anomalous: Optional[Path] = typer.Option(None, help="Images: folder of anomalous images."),
    input: Optional[Path] = typer.Option(None, "--input", help="Series, tables: labelled CSV file."),
    label_column: str = typer.Option("anomaly", help="Series, tables: the column of labels (1 = anomaly)."),
    encoding: Optional[str] = typer.Option(None, help="Series, tables: CSV encoding (default: a table "
                                           "model's own, else detected)."),
    masks: Optional[Path] = typer.Option(None, help="Images: folder of defect masks (<name>.png or "
                                         "<name>_mask.png); adds pixel ROC-AUC, AUPRO and heatmaps."),
    mvtec: Optional[Path] = typer.Option(None, help="Images: MVTec-layout folder; evaluates on ROOT/test "
                                         "with ROOT/ground_truth masks."),
    stride: Optional[int] = typer.Option(None, help="Images, patch mode: grid step of the anomaly maps "
                                         "(default: the model's own scoring stride, one pass for scores and "
                                         "maps; a step k times finer scores k*k times the patches)."),
    map_sigma: float = typer.Option(0.0, help="Images: Gaussian smoothing of the anomaly maps, in pixels."),
):
    """Metrics and plots on labelled data; metrics.json names the model version.

    Images: plain folders or an MVTec folder, with masks also pixel-level metrics and
    heatmaps. Series and tables: one CSV file with a label column."""
    from reconad.ops.loading import load_model

    det = load_model(model)
    if det.kind == "image":
        if input is not None:
            raise ValueError("an image model is evaluated on --normal DIR and --anomalous DIR (or --mvtec ROOT), "
                             "not on --input")
        _images(det, out, normal, anomalous, masks, mvtec, int(det.stride) if stride is None else stride, map_sigma)
        return
    if input is None:
        raise ValueError(f"a {det.kind} model needs --input FILE.csv with a label column (--label-column)")
    if normal is not None or anomalous is not None or mvtec is not None or masks is not None:
        raise ValueError(f"--normal, --anomalous, --mvtec and --masks are for image models; this is a "
                         f"{det.kind} model: give --input FILE.csv")
    from reconad.evaluation.evaluate import evaluate_series, evaluate_table

    frame, y = kinds.read_rows(det, input, encoding, label_column)
    if det.kind == "series":
        result = evaluate_series(det, frame, y, out)
        print_metrics(result, f"{input.name} (VUS-PR {result['vus_pr']:.4f}, FAR {result['far']:.4f})")
        console.print(f"wrote {out}/: metrics.json, report.txt, series.png, loss.png (model "
                      f"{det.model_version_})", highlight=False)
        return
    result = evaluate_table(det, frame, y, out)
    print_metrics(result, f"{input.name}: {len(y)} rows, {int(y.sum())} anomalous")
    console.print(f"wrote {out}/: metrics.json, report.txt, scores.png, roc.png, loss.png (model "
                  f"{det.model_version_})", highlight=False)


def _images(det, out, normal, anomalous, masks, mvtec, stride, map_sigma) -> None:
    from reconad.data import layouts
    from reconad.data.images import list_image_files
    from reconad.evaluation.evaluate import evaluate_images, evaluate_with_maps

    if mvtec is not None or masks is not None or det.patch_size is not None:
        if mvtec is not None:
            if normal is not None or anomalous is not None:
                raise ValueError("give either --mvtec ROOT or --normal/--anomalous folders")
            _, data = layouts.mvtec(mvtec)
        else:
            if normal is None or anomalous is None:
                raise ValueError("give --normal DIR and --anomalous DIR (or --mvtec ROOT)")
            data = layouts.plain(normal, anomalous, masks)
        with_masks = data.has_masks
        result = evaluate_with_maps(det, data.files, data.labels, data.masks if with_masks else None,
                                    out, stride=stride, sigma=map_sigma)
        print_metrics(result, f"{len(data.files)} images, {sum(data.labels)} anomalous")
        if with_masks:
            console.print(f"pixel ROC-AUC {result['pixel_roc_auc']:.4f}   AUPRO {result['aupro']:.4f}")
        console.print(f"wrote {out}/: metrics.json, report.txt, scores.png, roc.png, heatmaps.png")
        return
    if normal is None or anomalous is None:
        raise ValueError("give --normal DIR and --anomalous DIR (or --mvtec ROOT)")
    check_dir(normal, "normal-image")
    check_dir(anomalous, "anomalous-image")
    result = evaluate_images(det, [str(f) for f in list_image_files(normal)],
                             [str(f) for f in list_image_files(anomalous)], out)
    print_metrics(result, f"{normal.name} vs {anomalous.name}")
    console.print(f"wrote {out}/: metrics.json, report.txt and plots")
