"""Networks, registered by name. A model is a pure ``nn.Module``: no training code inside."""

from reconad.models.registry import available, build, register
from reconad.models import conv, conv1d, dense, recurrent  # noqa: F401  (register the families)
from reconad.models import gan, gmm, tabular, vae  # noqa: F401

__all__ = ["available", "build", "register"]
