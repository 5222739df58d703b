"""Local services on loopback (no Docker): SeaweedFS S3, MLflow server, Prefect server."""
