import os, sys
"""Cache raw stage maps (s8, s16, s32; no pooling) of magnetic tile train/test at short side 256."""
import sys, time, numpy as np, torch, torch.nn.functional as F
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from _common import magnetic_tile_split
from reconad import ImageDetector
from reconad.detectors import features as fd
from reconad.data.images import to_image_list
torch.set_num_threads(1)
size = int(sys.argv[1]) if len(sys.argv) > 1 else 256
contrast = sys.argv[2] if len(sys.argv) > 2 else "image"
# optional third argument: the image padded by P pixels on every side before the backbone
# ("reflect32", "replicate32"), the stage maps cropped back to the image's own locations
pad = sys.argv[3] if len(sys.argv) > 3 else ""
pad_mode, pad_px = (pad.rstrip("0123456789"), int(pad[len(pad.rstrip("0123456789")):])) if pad else ("", 0)
suffix = ("" if contrast == "image" else "_" + contrast) + ("_" + pad if pad else "")
stages = ("s8", "s16", "s32")
split = magnetic_tile_split()
det = ImageDetector(model="feature_knn", verbose=0)
pyr = fd.load_pyramid(det)
net = pyr.net
def extract(paths):
    out = {s: [] for s in stages}; t = time.perf_counter()
    for k, p in enumerate(paths):
        im = to_image_list([p])[0]
        x = torch.from_numpy(im)[None]
        tgt = fd.resized_shape(x.shape[2], x.shape[3], size)
        x = F.interpolate(x, size=tgt, mode="bilinear", align_corners=False, antialias=True)
        if contrast == "image":
            x = fd.standardise_contrast(x)
        elif contrast == "robust":  # median and interquartile range / 1.349 instead of mean and std
            q = torch.quantile(x.flatten(1), torch.tensor([0.25, 0.5, 0.75]), dim=1)
            x = (x - q[1].view(-1, 1, 1, 1)) / ((q[2] - q[0]) / 1.349).clamp_min(1e-3).view(-1, 1, 1, 1) * fd.CONTRAST_STD + fd.CONTRAST_MEAN
        x = x.expand(-1, 3, -1, -1).contiguous(memory_format=torch.channels_last)
        if pad_px:
            x = F.pad(x, (pad_px,) * 4, mode=pad_mode)
        with torch.no_grad():
            maps = net.features((x - pyr.mean) / pyr.std, stages)
        if pad_px:
            maps = [m[..., pad_px // st:m.shape[-2] - pad_px // st, pad_px // st:m.shape[-1] - pad_px // st]
                    for m, st in zip(maps, (8, 16, 32))]
        for s, m in zip(stages, maps):
            out[s].append(m[0].half().contiguous().numpy())
        if k % 100 == 0: print(k, time.perf_counter() - t, flush=True)
    return out, time.perf_counter() - t
for part in ("train", "test"):
    paths = [str(p) for p in split[part]]
    out, secs = extract(paths)
    np.savez(f"/tmp/features/mt{size}{suffix}_{part}.npz", **{f"{s}_{i}": a for s in stages for i, a in enumerate(out[s])}, n=len(paths), secs=secs)
    print(part, secs, flush=True)
