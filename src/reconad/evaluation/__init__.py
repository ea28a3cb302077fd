"""Metrics, plots, the HTML report, evaluation of saved models and hyper-parameter search."""
