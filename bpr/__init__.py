"""Box Prediction Rebalancing: train detectors on partially labeled underwater video (Qt-free library)."""

__version__ = "0.1.0"
