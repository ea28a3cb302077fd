"""``benchmarks/odds.py`` (always ``--no-write``) with two more keys for ``--variants``, to
measure the capacity of ``TabularDetector()``'s default ensemble where a plain setting
cannot say it:

* ``"latent_scale": s``: a bottleneck of ``max(1, round(s * default_latent_dim(F)))`` for a
  table of ``F`` encoded features (0.5: half the default's, 1.5: half again as wide);
* ``"updates": n``: about ``n`` weight updates instead of the default's 300 (the epochs
  follow from the training rows, as for the default).

    python benchmarks/odds_capacity.py --detectors reconad --sets cardio,pima --seeds 0,1 \\
        --variants '{"half bottleneck": {"latent_scale": 0.5}, "150 updates": {"updates": 150}}'

The results are in benchmarks/odds_notes.md ("Less capacity ...").
"""

from __future__ import annotations

import sys

import odds
from reconad.detectors import tabular

_build, _train, _make = tabular.TabularDetector._build, tabular.TabularDetector._train, odds.make


def build(det):
    scale = getattr(det, "latent_scale", None)
    if scale is None:
        return _build(det)
    det.latent_dim = max(1, round(scale * tabular.default_latent_dim(det.n_features_)))
    try:
        return _build(det)
    finally:
        det.latent_dim = None


def train(det, train_rows, val_rows):
    updates = getattr(det, "updates", None)
    if updates is None:
        return _train(det, train_rows, val_rows)
    defaults = tabular.MODEL_DEFAULTS["ensemble"]
    saved, defaults["updates"] = defaults["updates"], int(updates)
    try:
        return _train(det, train_rows, val_rows)
    finally:
        defaults["updates"] = saved


def make(name: str, seed: int, variants: dict):
    settings = dict(variants.get(name, {}))
    extra = {key: settings.pop(key) for key in ("latent_scale", "updates") if key in settings}
    if extra and settings.get("latent_dim") is not None:
        raise ValueError(f"variant {name!r}: give latent_scale or latent_dim, not both")
    det = _make(name, seed, {**variants, name: settings} if name in variants else variants)
    for key, value in extra.items():
        setattr(det, key, float(value) if key == "latent_scale" else int(value))
    return det


if __name__ == "__main__":
    tabular.TabularDetector._build, tabular.TabularDetector._train, odds.make = build, train, make
    if "--no-write" not in sys.argv:
        sys.argv.append("--no-write")
    odds.main()
