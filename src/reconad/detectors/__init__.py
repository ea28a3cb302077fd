"""The public detectors, one per kind of data, on one ``BaseDetector``."""

from reconad.detectors.base import BaseDetector, load
from reconad.detectors.image import ImageDetector
from reconad.detectors.series import SeriesDetector

__all__ = ["BaseDetector", "ImageDetector", "SeriesDetector", "load"]
