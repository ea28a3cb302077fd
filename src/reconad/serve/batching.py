"""Scoring for the service: one batched model call for the requests that arrive together.

:class:`MicroBatcher` takes the requests waiting when it is free (and those that arrive
within ``wait`` seconds, when ``wait`` > 0; at most ``max_batch`` samples), scores them
with one call of its scoring function in a worker thread (so the event loop keeps reading
requests meanwhile), and hands each request its slice of the result. With ``wait=0``
a lone request is scored at once, and under load the requests that arrive while one
batch is scored form the next.

:func:`image_engine` picks that scoring function for an image detector: the detector's
exported ONNX graph in ONNX Runtime (the same scores to a relative 1e-5, see
``tests/test_export.py``; several times faster for one image) or the detector itself.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np

ENGINES = ("auto", "onnx", "python")


class MicroBatcher:
    """Batches calls of ``fn(X) -> scores`` (arrays along the first axis) across requests."""

    def __init__(self, fn: Callable[[np.ndarray], np.ndarray], wait: float = 0.0, max_batch: int = 256,
                 inline_samples: int = 1):
        self.fn = fn
        self.inline_samples = int(inline_samples)
        self.wait = float(wait)
        self.max_batch = int(max_batch)
        self._queue: asyncio.Queue | None = None
        self._task: asyncio.Task | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="reconad-score")

    async def score(self, X: np.ndarray) -> np.ndarray:
        """Scores of the samples ``X`` (scored together with other waiting requests)."""
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.done() or self._task.get_loop() is not loop:
            self._queue = asyncio.Queue()  # (again) in this loop: test clients start new ones
            self._task = loop.create_task(self._run())
        future = loop.create_future()
        await self._queue.put((X, future))
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            items = [await self._queue.get()]
            n = len(items[0][0])
            await asyncio.sleep(0)  # let the loop read requests that have already arrived
            deadline = loop.time() + self.wait
            while n < self.max_batch:
                if self._queue.empty():
                    timeout = deadline - loop.time()
                    if timeout <= 0:
                        break
                    try:
                        item = await asyncio.wait_for(self._queue.get(), timeout)
                    except asyncio.TimeoutError:
                        break
                else:
                    item = self._queue.get_nowait()
                items.append(item)
                n += len(item[0])
            await self._score_batch(loop, items)

    async def _score_batch(self, loop, items) -> None:
        try:
            batch = items[0][0] if len(items) == 1 else np.concatenate([x for x, _ in items])
            if len(batch) <= self.inline_samples:  # cheaper than the hand-over to the thread
                scores = self.fn(batch)
            else:
                scores = await loop.run_in_executor(self._pool, self.fn, batch)
        except Exception as exc:  # a batch fails together; each request gets the error
            if len(items) == 1:
                items[0][1].set_exception(exc)
                return
            for x, future in items:  # score one by one, so one bad request fails alone
                try:
                    future.set_result(await loop.run_in_executor(self._pool, self.fn, x))
                except Exception as one_exc:
                    future.set_exception(one_exc)
            return
        start = 0
        for x, future in items:
            if not future.done():
                future.set_result(scores[start:start + len(x)])
            start += len(x)

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self._pool.shutdown(wait=False)


def _onnx_session(detector, threads: int):
    """An ONNX Runtime session on ``detector``'s exported graph (float32 images in)."""
    import onnxruntime as ort

    from reconad.export import scoring_graph
    from reconad.export.graph import _onnx_bytes

    graph = scoring_graph(detector, "float32", anomaly_map=False)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(threads)
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(_onnx_bytes(graph), opts, providers=["CPUExecutionProvider"])


def image_engine(detector, engine: str = "auto", threads: int = 1) -> tuple[str, Callable[[np.ndarray], np.ndarray]]:
    """``(name, fn)``: ``fn`` maps float32 images ``(N, H, W, C)`` in 0..1 (as the model's
    channels) to float64 scores. ``engine``: ``"onnx"`` (the exported graph in ONNX
    Runtime), ``"python"`` (the detector) or ``"auto"`` (ONNX when onnxruntime is installed
    and the model exports, else Python)."""
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
    if engine in ("auto", "onnx"):
        try:
            session = _onnx_session(detector, threads)
        except (ImportError, ValueError) as exc:  # no onnxruntime, or a family that does not export
            if engine == "onnx":
                raise ValueError(f"cannot score with ONNX Runtime: {exc}") from None
        else:
            def onnx_scores(X: np.ndarray) -> np.ndarray:
                x = X[..., 0] if X.shape[-1] == 1 else X
                return session.run(["score"], {"input": np.ascontiguousarray(x)})[0].astype(np.float64)

            return "onnx", onnx_scores

    def python_scores(X: np.ndarray) -> np.ndarray:
        return np.asarray(detector.decision_function(X), dtype=np.float64)

    return "python", python_scores
