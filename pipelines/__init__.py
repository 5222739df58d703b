"""Prefect 3 flows for lerenet: thin wrappers around ``lerenet.stages`` (no stage logic here)."""
