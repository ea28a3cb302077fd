"""``SeriesDetector`` as one scoring graph: a raw series in, a score and a label per step out.

The graph takes one series ``(T, F)`` (float32, the sensor columns in training order,
``T >= window``) and does what ``decision_function`` does after reading the data: the
scaling with the training centre and scale, the windows (every ``stride`` rows, gathered
by index), the network on 1,024 windows at a time (a loop in the graph: one pass over all
windows of a long series is slower, its tensors leave the cache), the per-window, per-sensor error
(slow sensors' window means removed first; the mean over the window's newest
``score_last`` rows, divided by the training sensor norms), the window score (the sum or
the largest over the scored sensors), and the combination of the windows covering each step
(``mean``: overlap-add by a transposed convolution, divided by the count; ``max``: a max
pool over the windows that end within ``window`` steps; ``last``: the window that ends at
or before the step). It returns ``score`` (float32 ``(T,)``) and ``label`` (int64
``(T,)``, 1 inside an alert: the detector's alert rule on the scores, as ``predict``; with
the plain rule, 1 where ``score > threshold``).

Not in the graph: reading CSV or DataFrames, choosing columns by name and filling gaps.
Pass a gap-free float array; a missing value (NaN) makes the scores of the windows that
hold it NaN (label 0). The TorchScript module raises an error (``torch.jit.Error``) for a series of the
wrong width or shorter than one window; ONNX Runtime fails on the wrong width.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from reconad.data.series import SCALED_LIMIT
from reconad.detectors.series import SeriesDetector
from reconad.export.graph import ExportError, ScoringGraph, check_input_dtype, frozen_copy, register_exporter, script, \
    trace_network


class _Conv1dAs2d(nn.Module):
    """A fitted ``Conv1d`` or ``ConvTranspose1d`` run as its 2-D twin on ``(N, C, 1, L)``:
    the same numbers up to rounding, and ONNX Runtime's 2-D convolutions are faster than
    its 1-D ones."""

    def __init__(self, conv: nn.Module):
        super().__init__()
        self.transposed = isinstance(conv, nn.ConvTranspose1d)
        self.stride, self.padding = int(conv.stride[0]), int(conv.padding[0])
        self.output_padding = int(conv.output_padding[0]) if self.transposed else 0
        self.weight = nn.Parameter(conv.weight.detach().unsqueeze(2), requires_grad=False)
        self.bias = None if conv.bias is None else nn.Parameter(conv.bias.detach(), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.unsqueeze(2)
        if self.transposed:
            y = F.conv_transpose2d(x, self.weight, self.bias, stride=(1, self.stride), padding=(0, self.padding),
                                   output_padding=(0, self.output_padding))
        else:
            y = F.conv2d(x, self.weight, self.bias, stride=(1, self.stride), padding=(0, self.padding))
        return y[:, :, 0]  # not squeeze: its ONNX form on a scripted graph is a conditional


def convs_as_2d(network: nn.Module) -> nn.Module:
    """``network`` with every 1-D convolution replaced by :class:`_Conv1dAs2d` (in place)."""
    for name, child in network.named_children():
        if (isinstance(child, (nn.Conv1d, nn.ConvTranspose1d)) and child.groups == 1 and child.dilation[0] == 1
                and child.padding_mode == "zeros"):
            setattr(network, name, _Conv1dAs2d(child))
        else:
            convs_as_2d(child)
    return network


class ChunkedWindowScores(nn.Module):
    """Window scores ``(n,)`` of a scaled series ``(T, F)``, ``chunk`` windows at a time: a
    loop in the graph, as one pass over all windows of a long series leaves the cache
    behind and is slower (scripted, so that ONNX gets a ``Loop``)."""

    def __init__(self, network: nn.Module, sensor_norm: torch.Tensor, window: int, stride: int,
                 absolute: bool, worst_sensor: bool = False, chunk: int = 1024,
                 slow: torch.Tensor | None = None, scored: torch.Tensor | None = None, score_rows: int = 0):
        super().__init__()
        self.network = network
        self.window, self.stride, self.absolute, self.chunk = int(window), int(stride), absolute, int(chunk)
        self.worst_sensor = bool(worst_sensor)  # sensor_reduce="max": the worst sensor, else the sum
        self.score_rows = int(score_rows) if score_rows else self.window  # newest rows a window is scored on
        n = sensor_norm.numel()
        self.register_buffer("sensor_norm", sensor_norm.clone())
        self.register_buffer("offsets", torch.arange(self.window))
        # slow sensors (1.0): their mean over each window is removed before the network
        self.register_buffer("slow", torch.zeros(n) if slow is None else slow.to(torch.float32).clone())
        self.has_slow = bool(self.slow.sum() > 0)
        # sensors that make the window score (1.0); the others are input only
        self.register_buffer("scored", torch.ones(n) if scored is None else scored.to(torch.float32).clone())

    def forward(self, scaled: torch.Tensor) -> torch.Tensor:
        n = (scaled.size(0) - self.window) // self.stride + 1
        parts: list[torch.Tensor] = []
        for start in range(0, n, self.chunk):
            starts = torch.arange(start, min(start + self.chunk, n)) * self.stride
            wins = scaled[starts.unsqueeze(1) + self.offsets.unsqueeze(0)]   # (chunk, window, F)
            if self.has_slow:
                wins = wins - wins.mean(1, keepdim=True) * self.slow
            diff = wins - self.network(wins)
            err = diff.abs() if self.absolute else diff.square()
            per_sensor = err[:, self.window - self.score_rows:].mean(1) / self.sensor_norm
            if self.worst_sensor:
                masked = torch.where(self.scored > 0, per_sensor, torch.full_like(per_sensor, float("-inf")))
                parts.append(masked.amax(1))
            else:
                parts.append((per_sensor * self.scored).sum(1))
        return torch.cat(parts)


def _last_true(mask: torch.Tensor) -> torch.Tensor:
    """For each step, the index of the latest True at or before it (-1 if none); built
    from a cumulative sum and a gather, which ONNX has (it has no cumulative max)."""
    count = torch.cumsum(mask.to(torch.int64), 0)
    where = torch.cat([torch.full((1,), -1, dtype=torch.int64), torch.nonzero(mask).view(-1)])
    return where[count]


class SeriesScorer(nn.Module):
    """A raw series ``(T, F)`` to per-step ``(score, label)``; see the module docstring."""

    def __init__(self, network: nn.Module, center: np.ndarray, scale: np.ndarray, sensor_norm: np.ndarray,
                 window: int, stride: int, combine: str, absolute: bool, threshold: float,
                 worst_sensor: bool = False, slow: np.ndarray | None = None, scored: np.ndarray | None = None,
                 score_rows: int = 0, release: float = 1.0, enter: int = 1, leave: int = 1):
        super().__init__()
        self.enter, self.leave = int(enter), int(leave)
        self.window = int(window)
        self.stride = int(stride)
        self.combine = combine
        self.n_features = int(len(center))
        f32 = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float32)  # noqa: E731
        self.limit = float(SCALED_LIMIT)  # scaled values are clipped as SeriesDetector clips them
        self.register_buffer("center", f32(center))
        self.register_buffer("scale", f32(scale))
        self.window_scores = ChunkedWindowScores(
            network, f32(sensor_norm), window, stride, absolute, worst_sensor,
            slow=None if slow is None else f32(slow), scored=None if scored is None else f32(scored),
            score_rows=score_rows)
        self.register_buffer("kernel", torch.ones(1, 1, self.window))
        self.register_buffer("threshold", torch.tensor(float(threshold), dtype=torch.float64))
        self.register_buffer("low", torch.tensor(float(threshold) * float(release), dtype=torch.float64))

    def alert_flags(self, score: torch.Tensor) -> torch.Tensor:
        """The detector's alert rule (``reconad.thresholds.episodes``), vectorised."""
        s = score.to(torch.float64)
        idx = torch.arange(s.size(0))
        above, below = s > self.threshold, s <= self.low
        run_above = torch.where(above, idx - _last_true(~above), torch.zeros_like(idx))
        run_below = torch.where(below, idx - _last_true(~below), torch.zeros_like(idx))
        return _last_true(run_above >= self.enter) > _last_true(run_below >= self.leave)

    def to_steps(self, s: torch.Tensor, length: int) -> torch.Tensor:
        """Per-step scores ``(length,)`` from window scores ``(n,)`` (``windows.to_steps``)."""
        w, stride = self.window, self.stride
        if self.combine == "last":
            t = torch.arange(length)
            j = torch.div(t - (w - 1), stride, rounding_mode="floor").clamp(min=0)
            return torch.where(t >= w - 1, s[j], torch.zeros_like(s[j]))
        if self.combine == "mean":
            sums = F.conv_transpose1d(s.view(1, 1, -1), self.kernel, stride=stride)
            counts = F.conv_transpose1d(torch.ones_like(s).view(1, 1, -1), self.kernel, stride=stride)
            steps = (sums / counts).view(-1)                                 # (n - 1) * stride + w
        else:
            placed = s.view(-1, 1)
            if stride > 1:  # window scores at their start rows, -inf between
                gaps = torch.full_like(placed.expand(-1, stride - 1), float("-inf"))
                placed = torch.cat([placed, gaps], 1).view(-1)[: 1 - stride]
            padded = F.pad(placed.view(1, 1, -1), (w - 1, w - 1), value=float("-inf"))
            steps = F.max_pool1d(padded, w, 1).view(-1)
        tail = s[-1:].expand(length - steps.size(0))  # steps no window covers: the last window
        return torch.cat([steps, tail])

    def forward(self, series: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if series.dim() != 2 or series.size(1) != self.n_features:
            raise RuntimeError("the series must be (T, F) with the training sensor columns")
        if series.size(0) < self.window:
            raise RuntimeError("the series is shorter than one window")
        scaled = ((series.to(torch.float32) - self.center) / self.scale).clamp(-self.limit, self.limit)
        score = self.to_steps(self.window_scores(scaled), series.size(0))
        label = self.alert_flags(score).to(torch.int64)
        return score, label


@register_exporter(SeriesDetector)
def _series_graph(det: SeriesDetector, input_dtype: str | None, score: str | None = None,
                  threshold: float = 0.0, anomaly_map: bool = True) -> ScoringGraph:
    input_dtype = check_input_dtype(input_dtype, ("float32", "float64"))
    if score is not None and score != det.score:
        raise ExportError(f"a series model is exported with its own score ({det.score!r}); refit with "
                          f"score={score!r} to export another")
    window, stride, n_feat = int(det.window), int(det.stride), int(det.n_features_)
    network = convs_as_2d(frozen_copy(det.model_))
    rng = np.random.default_rng(0)
    length = window + 3 * stride + 1  # a few windows and an uncovered tail when stride > 1
    example = torch.from_numpy(rng.normal(size=(length, n_feat)).astype(input_dtype))
    net_example = torch.from_numpy(rng.normal(size=(4, window, n_feat)).astype(np.float32))
    slow = np.asarray(getattr(det, "slow_mask_", np.zeros(n_feat, bool)), dtype=bool)
    scored = np.ones(n_feat, bool)
    if not getattr(det, "score_slow", True) and slow.any() and not slow.all():
        scored = ~slow
    args = (det.center_, det.scale_, det.sensor_norm_, window, stride, det.combine, det.score == "mae",
            threshold, getattr(det, "sensor_reduce", "sum") == "max", slow.astype(np.float32),
            scored.astype(np.float32), det._score_rows(), float(getattr(det, "alert_release", 1.0)),
            int(getattr(det, "alert_enter", 1)), int(getattr(det, "alert_leave", 1)))
    script_module = script(SeriesScorer(trace_network(network, net_example), *args),
                           f"series model {det.model!r}")
    meta = {"model": det.model, "score": det.score, "combine": det.combine, "window": window,
            "sensor_reduce": getattr(det, "sensor_reduce", "sum"),
            "stride": stride, "columns": list(det.columns_), "input_shape": ["steps", n_feat]}
    # ONNX comes from the scripted module, so that the loop over window chunks stays a loop
    return ScoringGraph(script_module, script_module, example, ("score", "label"), meta, first_axis="steps")
