"""reconad: anomaly detection in manufacturing by reconstruction."""

from reconad._version import __version__
from reconad.detectors import BaseDetector, ImageDetector, SeriesDetector, TabularDetector, load

__all__ = ["BaseDetector", "ImageDetector", "SeriesDetector", "TabularDetector", "load", "__version__"]
