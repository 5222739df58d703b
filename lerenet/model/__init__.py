"""LERENet as pure ``nn.Module``s: backbones (a registry), MPR, MPE, IFM, the training-free start
(``priors``), the class memory, the prototype baseline, and ``build`` to make one from the
params. No training, tracking or logging code here; importing the package imports no torch.
"""
