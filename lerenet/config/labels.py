"""The label contract of every episode tensor: what a mask's values mean, in one place.

Masks on disk are 0/255 PNGs (``lerenet/data/imageio.py``); once loaded for a model, a mask
holds 0 (background), 1 (defect) and ``IGNORE`` where nothing is known, such as the border an
augmentation invents (``lerenet/data/transforms.py``). The loss, the metrics and the model's
support statistics all skip ``IGNORE`` pixels, so they must agree on its value. It lives in
``config`` because that is the one package both ``data`` and ``model`` may import.
"""

from __future__ import annotations

BACKGROUND = 0
DEFECT = 1
IGNORE = 255
