"""Scoring at scale: pandas frames and Dask."""
