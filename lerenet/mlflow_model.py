"""Where ``LERENetPyfunc`` lived before ``lerenet.tracking``: kept for models already logged.

MLflow pickles a pyfunc's ``python_model`` by reference, so a model logged by an earlier
version of lerenet loads ``lerenet.mlflow_model.LERENetPyfunc``; without this module every
such registered version would fail to load. New code imports ``lerenet.tracking.pyfunc``.
"""

from lerenet.tracking.pyfunc import LERENetPyfunc

__all__ = ["LERENetPyfunc"]
