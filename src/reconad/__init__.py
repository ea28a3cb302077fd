"""reconad: anomaly detection in manufacturing by reconstruction."""

from reconad._version import __version__
from reconad.detectors import BaseDetector, ImageDetector, SeriesDetector, load

__all__ = ["BaseDetector", "ImageDetector", "SeriesDetector", "load", "__version__"]
