"""CarbonTrack: energy and CO2e accounting for ML training and inference."""

__version__ = "0.1.0"
