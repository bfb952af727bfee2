"""Segmentation methods: phase-contrast frame -> per-frame instance labels.

Every method is a function ``segment_<name>(image, **params) -> (Y, X) uint16``
labels (0 = background, ids unique within the frame, not linked over time).
``segment_frame`` dispatches on the ``method`` name from the config.

Modules:

- :mod:`.step` -- the workflow's segment step (a FOV's stack -> label stack);
- :mod:`.logstd` -- PyAMA's LOG-STD, the reference method;
- :mod:`.watershed` -- the default method, :func:`.watershed.segment_watershed`,
  whose steps live in :mod:`.maps` (binning, texture, brightness),
  :mod:`.foreground` (first look, cell scale, which foreground),
  :mod:`.masks` (mask cleanup, distance map, scale and halo measures),
  :mod:`.split` (watershed from the maxima, shallow basins merged) and
  :mod:`.outlines` (outlines onto the halo, grown into the learned mask);
- :mod:`.pixel_cnn` -- the network behind the learned foreground and seed
  map (weights in ``_pixel_cnn_weights.npz``, run by ONNX Runtime from
  ``_pixel_cnn_weights.onnx``), on the features of
  :mod:`.pixel_classifier` (also the per-pixel perceptrons,
  ``classifier="perceptron"``; weights in :mod:`._pixel_mlp_weights`).
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

import numpy as np

#: method name -> "module:function" inside this package
_METHODS: dict[str, str] = {
    "logstd": "logstd:segment_logstd",
    "watershed": "watershed:segment_watershed",
}


def list_methods() -> list[str]:
    """Names accepted as ``segmentation.method``."""
    return sorted(_METHODS)


def get_method(name: str) -> Callable[..., np.ndarray]:
    """The segmentation function registered under ``name``."""
    try:
        module, func = _METHODS[name].split(":")
    except KeyError:
        raise ValueError(
            f"unknown segmentation method {name!r} (choose from {list_methods()})"
        ) from None
    return getattr(importlib.import_module(f"{__name__}.{module}"), func)


def segment_frame(image: np.ndarray, method: str = "logstd", **params: Any) -> np.ndarray:
    """Segment one frame with the named method and its parameters."""
    return get_method(method)(image, **params)
