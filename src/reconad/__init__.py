"""reconad: anomaly detection in manufacturing by reconstruction."""

from reconad._version import __version__

__all__ = ["BaseDetector", "ImageDetector", "SeriesDetector", "TabularDetector", "load", "__version__"]


def __getattr__(name: str):
    """The detectors load on first use (``from reconad import ImageDetector``), so that
    ``reconad --help`` and ``--version`` start without torch."""
    if name in __all__:
        from reconad import detectors

        return getattr(detectors, name)
    raise AttributeError(f"module 'reconad' has no attribute {name!r}")
