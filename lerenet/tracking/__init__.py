"""Everything that talks to MLflow, in one place: the rest of the library is MLflow-free, and
this package imports nothing of the library but its configuration and service checks.

- ``runs``: the tracking URI, the client's retry policy, the run handle stages log through, and
  what a run recorded (``recorded_run``, for ``lerenet reproduce``);
- ``pyfunc`` / ``served_model`` / ``loading``: the MLflow model flavour of LERENet and loading
  it back as verified tensors;
- ``registry``: registering versions and moving the ``staging``/``production`` aliases;
- ``uris``: from a model URI to the run and version behind it, and logging back to them;
- ``checkpoints``: checkpoint uploads and resuming a tracked run; ``versions``: listing and
  diffing registered versions.

Lineage (git commit, data and split digests) is ``lerenet.lineage``; retraining a version from
what it recorded is ``lerenet.stages.reproduce``.
"""
