"""The public detectors, one per kind of data, on one ``BaseDetector``."""

from reconad.detectors.base import BaseDetector, load
from reconad.detectors.image import ImageDetector
from reconad.detectors.series import SeriesDetector
from reconad.detectors.tabular import TabularDetector

__all__ = ["BaseDetector", "ImageDetector", "SeriesDetector", "TabularDetector", "load"]
