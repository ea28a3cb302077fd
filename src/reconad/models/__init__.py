"""Networks, and the catalogue that names them per kind of data. A model is a pure
``nn.Module``: no training code inside."""

from reconad.models.catalogue import KINDS, ModelEntry, entries, entry, names

__all__ = ["KINDS", "ModelEntry", "entries", "entry", "names"]
