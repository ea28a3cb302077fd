"""Loading, checking and shaping input data."""
