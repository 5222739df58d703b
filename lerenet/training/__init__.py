"""Training LERENet: the loop (``loop.train``) and its parts, each in its own module.

``batches`` draws the episodes and builds the step's tensors, ``feature_cache`` holds a frozen
backbone's levels of every augmented copy, ``level_memo`` those of the validation and test
images, ``losses`` and ``optim`` the objective and the parameter groups, ``validation_round``
one validation of the model being trained, ``checkpoint`` the model file and the resumable
training state, ``throughput`` where the loop's time goes.
"""
