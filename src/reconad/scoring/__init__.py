"""Score terms per sample, pixel and time step; patch and window aggregation."""
