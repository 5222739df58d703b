"""Everything that talks to MLflow, in one place: the rest of the library is MLflow-free.

- ``runs``: the tracking URI, the client's retry policy and the run handle stages log through;
- ``pyfunc``: the MLflow model flavour of LERENet (an episode in, a defect map out);
- ``registry``: registering versions and moving the ``staging``/``production`` aliases;
- ``lineage``: the tags that make a run reproducible (params, split, data version, commit);
- ``uris``: from a model URI to the run and version behind it, and logging back to them;
- ``reproduce``: retraining a registered version from what its run recorded.
"""
