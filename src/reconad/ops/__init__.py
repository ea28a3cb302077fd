"""Running on the line: the monitor, alerts, drift, the model registry and retraining."""
