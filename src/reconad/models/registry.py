"""Model families by name: ``build("conv_ae", input_shape=(1, 28, 28), latent_dim=16)``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import nn


@dataclass(frozen=True)
class ModelSpec:
    name: str
    builder: Callable[..., nn.Module]
    default_loss: str
    default_score: str
    description: str
    scores: tuple[str, ...] | None = None  # score names it offers; None: reconstruction terms


_REGISTRY: dict[str, ModelSpec] = {}


def register(name: str, *, default_loss: str, default_score: str, description: str,
             scores: tuple[str, ...] | None = None):
    """Decorator: register a builder ``f(input_shape, **kwargs) -> nn.Module`` under ``name``."""

    def deco(builder):
        _REGISTRY[name] = ModelSpec(name, builder, default_loss, default_score, description, scores)
        return builder

    return deco


def spec(name: str) -> ModelSpec:
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def available() -> dict[str, str]:
    """Registered model names with a one-line description."""
    return {name: s.description for name, s in sorted(_REGISTRY.items())}


def build(name: str, input_shape: tuple[int, ...], **kwargs) -> nn.Module:
    """Build model ``name`` for inputs of ``input_shape`` (without the batch axis)."""
    for key in ("latent_dim", "width", "depth", "n_components", "pca_components"):
        v = kwargs.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise ValueError(f"model {name!r}: {key} must be a positive integer, got {v!r}")
    if any(int(v) < 1 for v in input_shape):
        raise ValueError(f"model {name!r}: input shape {tuple(input_shape)} has an empty axis")
    try:
        return spec(name).builder(tuple(int(v) for v in input_shape), **kwargs)
    except TypeError as exc:
        raise TypeError(f"model {name!r}: {exc}") from None
