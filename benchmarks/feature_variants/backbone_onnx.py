"""The backbone's stage maps (s8, s16, s32) in torch (the detector's fused, channels-last
inference copy) against the same network exported to ONNX and run by ONNX Runtime, both
with 2 threads, on 30 images of short side 256 in 10 widths (each width three times, as
the magnetic tiles come in many sizes). Prints milliseconds per image and the largest
difference between the two outputs.

    python benchmarks/feature_variants/backbone_onnx.py
"""
import os
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "src"))
import onnxruntime as ort  # noqa: E402

from reconad import ImageDetector  # noqa: E402
from reconad.detectors import features as fd  # noqa: E402

STAGES = ("s8", "s16", "s32")


class Stages(torch.nn.Module):
    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor):
        return tuple(self.net.features(x, STAGES))


def main() -> None:
    torch.set_num_threads(2)
    net = Stages(fd.load_pyramid(ImageDetector(model="feature_knn", verbose=0)).net.eval())
    images = [torch.rand(1, 3, 256, 256 + 8 * k) for k in range(10)] * 3
    path = os.path.join(tempfile.mkdtemp(), "stages.onnx")
    t = time.perf_counter()
    torch.onnx.export(net, (images[0],), path, input_names=["x"], dynamic_axes={"x": {2: "h", 3: "w"}},
                      opset_version=17, dynamo=False)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    export_s = time.perf_counter() - t
    with torch.inference_mode():
        net(images[0].contiguous(memory_format=torch.channels_last))
        t = time.perf_counter()
        for x in images:
            net(x.contiguous(memory_format=torch.channels_last))
        torch_ms = (time.perf_counter() - t) / len(images) * 1e3
        session.run(None, {"x": images[0].numpy()})
        t = time.perf_counter()
        for x in images:
            session.run(None, {"x": x.numpy()})
        ort_ms = (time.perf_counter() - t) / len(images) * 1e3
        diff = max(float((torch.from_numpy(b) - a).abs().max())
                   for a, b in zip(net(images[3]), session.run(None, {"x": images[3].numpy()})))
    print("| backbone run by | ms per image | export and session |")
    print("|---|---|---|")
    print(f"| torch (the detector's inference copy) | {torch_ms:.1f} | – |")
    print(f"| ONNX Runtime | {ort_ms:.1f} | {export_s:.1f} s |")
    print(f"largest difference between the outputs: {diff:.1e}")


if __name__ == "__main__":
    main()
