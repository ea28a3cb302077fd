import os, sys
import sys, argparse; sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import *
from reconad.models.feature_heads import FeatureReverseDistillation, cosine_distance_map
ap = argparse.ArgumentParser(); ap.add_argument("--epochs", type=int, default=10); ap.add_argument("--pool", type=int, default=1)
ap.add_argument("--bottleneck", type=int, default=256); ap.add_argument("--width", type=int, default=64)
ap.add_argument("--lr", type=float, default=2e-3); ap.add_argument("--crop", type=int, default=8); ap.add_argument("--tag", default="rd")
ap.add_argument("--stages", default="s8,s16,s32"); ap.add_argument("--gauss", action="store_true")
a = ap.parse_args()
stages = tuple(a.stages.split(","))
def prep(m):
    out = [m[s][None] for s in stages]
    if a.pool > 1: out = [F.avg_pool2d(x, a.pool, 1, a.pool // 2, count_include_pad=False) for x in out]
    return out
train = [prep(m) for m in load("train")]
test = [prep(m) for m in load("test")]
if a.gauss:
    stats = [(torch.cat([t[k].flatten(2) for t in train], 2).mean((0, 2)).view(1, -1, 1, 1), torch.cat([t[k].flatten(2) for t in train], 2).std((0, 2)).view(1, -1, 1, 1).clamp_min(1e-3)) for k in range(len(stages))]
    norm = lambda ms: [(m - mu) / sd for m, (mu, sd) in zip(ms, stats)]
    train = [norm(t) for t in train]; test = [norm(t) for t in test]
y, types, masks = split_info()
torch.manual_seed(0); g = torch.Generator().manual_seed(0)
model = FeatureReverseDistillation([train[0][i].shape[1] for i in range(len(stages))], width=a.width, bottleneck=a.bottleneck, gaussian=a.gauss)
def mmap(ms, r, unreg=True):
    size = ms[0].shape[-2:]; tot = 0
    for m, (mu, lv) in zip(ms, r):
        d = 0.5 * ((m - mu) ** 2 * torch.exp(-lv) + (0 if unreg else lv)).mean(1, keepdim=True)
        if d.shape[-2:] != size: d = F.interpolate(d, size=size, mode="bilinear", align_corners=False)
        tot = tot + d
    return tot[:, 0] / len(ms)
print(sum(p.numel() for p in model.parameters()), flush=True)
opt = torch.optim.Adam(model.parameters(), lr=a.lr)
L = len(stages); fac = [2 ** (L - 1 - i) for i in range(L)]
def crop(ms, gen):
    hc, wc = ms[-1].shape[-2:]
    hf, wf = ms[0].shape[-2:]
    maxy = min(hc, hf // fac[0]) - a.crop; maxx = min(wc, wf // fac[0]) - a.crop
    y0 = int(torch.randint(maxy + 1, (1,), generator=gen)); x0 = int(torch.randint(maxx + 1, (1,), generator=gen))
    return [m[..., y0 * f:(y0 + a.crop) * f, x0 * f:(x0 + a.crop) * f] for m, f in zip(ms, fac)]
def loss_of(ms):
    r = model(ms)
    if a.gauss: return mmap(ms, r, unreg=False).mean()
    return cosine_distance_map(ms, r).mean()
B = 16
for ep in range(a.epochs):
    t = time.perf_counter(); model.train(); order = torch.randperm(len(train), generator=g); tot = 0
    for b in range(0, len(order) - B + 1, B):
        cs = [crop(train[i], g) for i in order[b:b + B].tolist()]
        ms = [torch.cat([c[k] for c in cs]) for k in range(L)]
        opt.zero_grad(); l = loss_of(ms); l.backward(); opt.step(); tot += float(l)
    print(ep, round(tot / (len(order) // B), 5), f"{time.perf_counter() - t:.0f}s", flush=True)
model.eval(); maps = []
t = time.perf_counter()
with torch.no_grad():
    for ms in test: maps.append((mmap(ms, model(ms)) if a.gauss else cosine_distance_map(ms, model(ms)))[0])
print(f"score {1000 * (time.perf_counter() - t) / len(test):.0f} ms/img")
print(a.tag, image_aucs(maps, y), "px", round(pixel_auc(maps, masks), 4), flush=True)
torch.save(maps, f"/tmp/features/maps_{a.tag}.pt"); torch.save(model.state_dict(), f"/tmp/features/model_{a.tag}.pt")
