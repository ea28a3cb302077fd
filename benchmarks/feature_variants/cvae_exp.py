import os, sys
import sys, argparse; sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import *
"""Convolutional feature VAE (3x3 context, Gaussian decoder) on cached s16+s32 maps, scored by M per location."""
from torch import nn
from reconad.scoring.features import unregularised_score, gaussian_nll, kl_standard_normal
ap = argparse.ArgumentParser(); ap.add_argument("--epochs", type=int, default=20); ap.add_argument("--latent", type=int, default=32)
ap.add_argument("--width", type=int, default=256); ap.add_argument("--beta", type=float, default=1.0); ap.add_argument("--lr", type=float, default=1e-3)
ap.add_argument("--crop", type=int, default=8); ap.add_argument("--crops", type=int, default=4); ap.add_argument("--k", type=int, default=3)
ap.add_argument("--down", action="store_true"); ap.add_argument("--tag", default="cvae")
a = ap.parse_args()
stages = ("s16", "s32")
tr = [pyramid(m, stages) for m in load("train")]
vec = torch.cat([f.flatten(1).T for f in tr])
mean, std = vec.mean(0).view(-1, 1, 1), vec.std(0).clamp_min(1e-6).view(-1, 1, 1)
tr = [(f - mean) / std for f in tr]
C = tr[0].shape[0]; k = a.k; p = k // 2
def block(i, o, kk, s=1): return nn.Sequential(nn.Conv2d(i, o, kk, s, kk // 2), nn.BatchNorm2d(o), nn.ReLU())
class CVAE(nn.Module):
    def __init__(s):
        super().__init__()
        s.enc = block(C, a.width, k, 2 if a.down else 1)
        s.mz = nn.Conv2d(a.width, a.latent, 1); s.lz = nn.Conv2d(a.width, a.latent, 1)
        s.dec = nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear") if a.down else nn.Identity(), block(a.latent, a.width, k))
        s.mx = nn.Conv2d(a.width, C, 1); s.lx = nn.Conv2d(a.width, C, 1)
    def forward(s, x):
        h = s.enc(x); mz, lz = s.mz(h), s.lz(h).clamp(-10, 10)
        z = mz + torch.randn_like(mz) * (0.5 * lz).exp() if s.training else mz
        g = s.dec(z)
        if g.shape[-2:] != x.shape[-2:]: g = F.interpolate(g, size=x.shape[-2:], mode="bilinear")
        return s.mx(g), s.lx(g).clamp(-8, 8), mz, lz
torch.manual_seed(0); g = torch.Generator().manual_seed(0)
model = CVAE(); opt = torch.optim.Adam(model.parameters(), lr=a.lr)
def crop(f):
    _, h, w = f.shape; c = a.crop
    y0 = int(torch.randint(max(h - c, 0) + 1, (1,), generator=g)); x0 = int(torch.randint(max(w - c, 0) + 1, (1,), generator=g))
    return f[:, y0:y0 + c, x0:x0 + c]
B = 16
for ep in range(a.epochs):
    t = time.perf_counter(); model.train(); tot = 0; n = 0
    for rep in range(a.crops):
        order = torch.randperm(len(tr), generator=g)
        for b in range(0, len(order) - B + 1, B):
            x = torch.stack([crop(tr[i]) for i in order[b:b + B].tolist()])
            mu, lv, mz, lz = model(x)
            loss = (gaussian_nll(x, mu, lv).mean() + a.beta * kl_standard_normal(mz, lz).mean()) / C
            opt.zero_grad(); loss.backward(); opt.step(); tot += loss.item(); n += 1
    if ep % 5 == 4 or ep == a.epochs - 1: print(ep, round(tot / n, 4), f"{time.perf_counter() - t:.1f}s", flush=True)
model.eval()
y, types, masks = split_info()
maps = {"M": [], "nll": []}
with torch.no_grad():
    for m in load("test"):
        z = ((pyramid(m, stages) - mean) / std)[None]
        mu, lv, _, _ = model(z)
        maps["M"].append(unregularised_score(z, mu, lv)[0]); maps["nll"].append(gaussian_nll(z, mu, lv)[0])
for kk, ms in maps.items():
    r = image_aucs(ms, y)
    print(a.tag, kk, r["max"], r["top10"], r["top30"], "px", round(pixel_auc(ms, masks), 4), flush=True)
torch.save(maps["M"], f"/tmp/features/maps_{a.tag}.pt")
