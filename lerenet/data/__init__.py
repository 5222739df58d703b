"""Data stages: ingestion, validation, splits and episodes, transforms, synthetic data."""
