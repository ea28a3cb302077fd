"""The public detectors, one per kind of data, on one ``BaseDetector``."""

from reconad.detectors.base import BaseDetector, load
from reconad.detectors.image import ImageDetector

__all__ = ["BaseDetector", "ImageDetector", "load"]
