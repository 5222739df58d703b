"""The pipeline stages, one module each, and their declarations (``specs``): what each runs,
reads and writes, from which dvc.yaml and the Prefect cache keys are made."""
