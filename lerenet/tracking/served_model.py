"""The code MLflow runs to serve a registered lerenet model (models-from-code: no pickle).

``pyfunc.log_model`` logs this file as the model's code and the model file as its artifact;
``loading.model_file_of`` accepts a logged model only when its code file is this one, byte
for byte, so a model that passes lerenet's checks serves nothing but this when MLflow loads it.
"""

import mlflow

from lerenet.tracking.pyfunc import LERENetPyfunc

mlflow.models.set_model(LERENetPyfunc())
