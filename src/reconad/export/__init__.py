"""Export a fitted detector as one ONNX or TorchScript graph that scores raw input.

:mod:`reconad.export.graph` is the framework (``export``, ``scoring_graph``, the exporter
registry); one module per detector family registers its graph: :mod:`.image`,
:mod:`.series`, :mod:`.table`.
"""

from reconad.export import image, series, table  # noqa: F401  (each registers its exporter)
from reconad.export.graph import ExportError, export, load_torchscript, scoring_graph

__all__ = ["ExportError", "export", "load_torchscript", "scoring_graph"]
