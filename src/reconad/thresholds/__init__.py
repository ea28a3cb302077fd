"""Thresholds: static rules from held-out normal scores, adaptive rules for streams."""
