"""``TabularDetector`` as one scoring graph: raw numeric rows in, a score and a label per row out.

The graph takes rows ``(N, F)`` (float64 by default, the columns in training order; see
the ``columns`` metadata) and does what the detector's ``TableEncoder`` and scoring do:
a missing value (NaN) becomes the column's training median (``missing="impute"``), the
columns are scaled with the training offset and scale (in float64, as the encoder does),
then the network and the per-row score (``mse``: mean squared error, ``l1``: summed
absolute error; for a detector that standardises its errors, each feature's error is
first divided by its training median, and an ensemble's members' scores are divided by
their training medians, each member's code term is added (the negative log-density of its
bottleneck code, taken from the same pass as the reconstruction, under its Gaussian
mixture, over its typical training value, at the detector's code weight), and the members'
scores are averaged, or their median taken, as the detector's ``combine`` says). It returns ``score`` (float32 ``(N,)``) and ``label`` (int64 ``(N,)``).

Not in the graph: reading CSV or DataFrames and matching columns by name. Tables with
categorical columns cannot be exported (their one-hot encoding works on strings, which
the graph does not take); with ``missing="error"`` a row with a NaN gets a NaN score
(label 0) instead of an error.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from reconad.detectors.tabular import TabularDetector
from reconad.models.tabular import code_surprise, median_of_members
from reconad.export.graph import ExportError, ScoringGraph, check_input_dtype, frozen_copy, register_exporter, script, \
    trace_network


class RebuildAndCodes(nn.Module):
    """A fitted table network's reconstruction of rows ``(N, F)`` and, for an ensemble with a
    code term, its members' bottleneck codes from the same pass (``rebuild_and_codes``);
    otherwise an empty tensor in their place, so that the traced network has one form."""

    def __init__(self, network: nn.Module, with_codes: bool):
        super().__init__()
        self.network, self.with_codes = network, with_codes

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.with_codes:
            return self.network.rebuild_and_codes(x)
        return self.network(x), x[:0]


class TableScorer(nn.Module):
    """Raw numeric rows ``(N, F)`` to ``(score, label)``; see the module docstring.
    ``network`` is a ``RebuildAndCodes`` (or its trace)."""

    def __init__(self, network: nn.Module, median: np.ndarray, offset: np.ndarray, scale: np.ndarray,
                 impute: bool, absolute: bool, threshold: float, members: bool = False,
                 error_scale: np.ndarray | None = None, median_of_members: bool = False,
                 member_scale: np.ndarray | None = None, code_density: dict | None = None,
                 code_scale: np.ndarray | None = None, code_weight: float = 0.0):
        super().__init__()
        self.network = network
        # the ensemble's code term (``TabularDetector.code_components``); without it
        # placeholder tensors, so that the graph has one form
        self.with_codes = code_density is not None
        density = code_density or {"means": torch.zeros(1, 1, 1), "prec_chol": torch.ones(1, 1, 1, 1),
                                   "log_weights": torch.zeros(1, 1), "offset": torch.zeros(1)}
        for name in ("means", "prec_chol", "log_weights", "offset"):
            self.register_buffer(f"code_{name}", density[name].detach().to(torch.float32).clone())
        # the weight over each member's training median, (members, 1)
        factor = float(code_weight) / (np.ones(1) if code_scale is None else np.asarray(code_scale, dtype=np.float64))
        self.register_buffer("code_factor", torch.as_tensor(factor.reshape(-1, 1), dtype=torch.float32))
        self.impute = impute
        self.absolute = absolute
        self.members = members  # the network returns (members, N, F) rather than (N, F)
        self.n_features = int(len(offset))
        f64 = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float64)  # noqa: E731
        self.register_buffer("median", f64(median))
        self.register_buffer("offset", f64(offset))
        self.register_buffer("scale", f64(scale))
        self.register_buffer("threshold", torch.tensor(float(threshold), dtype=torch.float64))
        if error_scale is None:
            error_scale = np.ones((1, self.n_features))
        self.register_buffer("error_scale", torch.as_tensor(np.asarray(error_scale), dtype=torch.float32))
        self.median_of_members = median_of_members
        if member_scale is None:
            member_scale = np.ones(len(self.error_scale))
        self.register_buffer("member_scale", torch.as_tensor(np.asarray(member_scale), dtype=torch.float32))

    def forward(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if rows.dim() != 2 or rows.size(1) != self.n_features:
            raise RuntimeError("rows must be (N, F) with the training columns in training order")
        x = rows.to(torch.float64)
        if self.impute:
            x = torch.where(torch.isnan(x), self.median, x)
        x = ((x - self.offset) / self.scale).to(torch.float32)
        out, codes = self.network(x)
        if not self.members:
            out = out.unsqueeze(0)
        error = (x.unsqueeze(0) - out).abs()
        if not self.absolute:
            error = error.square()
        error = error / self.error_scale.unsqueeze(1)
        per_member = (error.sum(2) if self.absolute else error.mean(2)) / self.member_scale.unsqueeze(1)
        if self.with_codes:
            surprise = code_surprise(codes, self.code_means, self.code_prec_chol, self.code_log_weights,
                                     self.code_offset)
            per_member = per_member + surprise * self.code_factor
        score = median_of_members(per_member) if self.median_of_members else per_member.mean(0)
        label = (score.to(torch.float64) > self.threshold).to(torch.int64)
        return score, label


@register_exporter(TabularDetector)
def _table_graph(det: TabularDetector, input_dtype: str | None, score: str | None = None,
                 threshold: float = 0.0, anomaly_map: bool = True) -> ScoringGraph:
    input_dtype = check_input_dtype(input_dtype, ("float64", "float32"))
    enc = det.encoder_
    if enc.categorical_:
        raise ExportError(f"a table model with categorical columns ({', '.join(enc.categorical_)}) cannot "
                          "be exported: their one-hot encoding works on text, which the graph does not "
                          "take; score it in Python or train on numeric columns")
    if score is not None and score != det.score:
        raise ExportError(f"a table model is exported with its own score ({det.score!r}); refit with "
                          f"score={score!r} to export another")
    density = getattr(det, "code_density_", None)
    network = RebuildAndCodes(frozen_copy(det.model_), density is not None)
    n = len(enc.columns_)
    rng = np.random.default_rng(0)
    example = torch.from_numpy(rng.normal(size=(3, n)).astype(input_dtype))
    args = (enc.median_, enc.offset_, enc.scale_, enc.missing == "impute", det.score == "l1", threshold,
            det.model == "ensemble", det.error_scale_, det.model == "ensemble" and det.combine == "median",
            getattr(det, "member_scale_", None))
    code_args = {} if density is None else {"code_density": density, "code_scale": det.code_scale_,
                                            "code_weight": det.code_weight()}
    module = TableScorer(network, *args, **code_args).eval()
    net_example = torch.from_numpy(rng.normal(size=(3, n)).astype(np.float32))
    script_module = script(TableScorer(trace_network(network, net_example), *args, **code_args),
                           f"table model {det.model!r}")
    meta = {"model": det.model, "score": det.score, "columns": list(enc.columns_), "input_shape": [n],
            "missing": enc.missing}
    return ScoringGraph(module, script_module, example, ("score", "label"), meta)
