"""What kind of input a fitted detector takes, judged from its public face."""

from __future__ import annotations


def input_kind(detector) -> str:
    """``"images"`` for a detector with ``anomaly_map`` and ``input_shape_`` (arrays or
    image files); ``"rows"`` for any other (a 2-D array or a ``pandas.DataFrame``, as
    table and series detectors take)."""
    kind = getattr(detector, "kind", None)  # the kind a reconad detector declares
    if kind is not None:
        return "images" if kind == "image" else "rows"
    return "images" if hasattr(detector, "anomaly_map") and hasattr(detector, "input_shape_") else "rows"
