"""A small convolutional network for the learned foreground and seed map (ONNX Runtime).

The per-pixel perceptrons of :mod:`.pixel_classifier` see a pixel's own
features (box means up to 15 classifier-grid px); they cannot tell a debris
band or a crowd of thin cells from a cell by its surroundings, and they
place outlines without knowing the cell's shape. This network reads the
same ``N_FEATURES`` classifier-grid features (:func:`.pixel_classifier.
classifier_features`) and predicts both maps at once: channel 0 is the
logit of the probability that a grid pixel belongs to a cell, channel 1 the
seed map (the pixel's distance, in grid px, to the outline of its own cell,
clipped to ``SEED_CLIP``; 0 on the background).

It is a small U-Net (Ronneberger et al. 2015), ``W`` = 12 channels at the
grid's resolution::

    e1 = relu(conv3(relu(conv3(x))))                     W    1/1
    e2 = relu(conv3(relu(conv3(pool(e1)))))              2W   1/2
    e3 = relu(conv3(relu(conv3(pool(e2)))))              3W   1/4
    d2 = relu(conv3([up(e3), e2]))                       2W   1/2
    d1 = relu(conv3([up(d2), e1]))                       W    1/1
    out = conv1(d1)                                      2

(``conv3``: 3x3 convolution with zero padding, ``conv1``: 1x1, ``pool``:
2x2 maximum, ``up``: 2x nearest-neighbour, ``[a, b]``: channels stacked).
A pixel's maps depend on about 45 grid px around it (180 input px for T98G
at 10x: the cell and its neighbours); the two full-resolution levels keep
thin cells (2-3 grid px wide) apart. Inputs are standardised by the
training set's mean and standard deviation; frames are padded (reflect) to
a multiple of 4 grid px and cropped back. (A cheaper variant, 8 channels at
full resolution and one more level, was 0.008 lower in mean F1 and 0.05
lower on the worst set in the same cross-validation: README.)

About 0.9 G multiply-adds per 1022 x 1024 T98G frame (256 x 256 grid px).
The forward pass runs in ONNX Runtime (``onnxruntime``, its CPU provider,
one thread, so the maps do not depend on the machine's cores): the network
is written as an ONNX model (:func:`to_onnx`, shipped as
``_pixel_cnn_weights.onnx`` beside the weights), ~40 ms per T98G frame against
~80 ms for the same layers as numpy matrix products (:func:`forward_numpy`,
the definition the graph is tested against: maps equal to float32
rounding, segmentations of the 25 T98G frames identical). The weights ship
in ``_pixel_cnn_weights.npz``, written with their cross-validation by set
by ``resources/segmentation/train_pixel_cnn.py`` (hand-annotated Usiigaci
T98G frames set1 to set25), which writes the ONNX file from them.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import numpy as np

#: weights file beside this module
WEIGHTS = Path(__file__).with_name("_pixel_cnn_weights.npz")
#: the shipped network as an ONNX model (``to_onnx(load(WEIGHTS))``, written with it)
ONNX = WEIGHTS.with_suffix(".onnx")
#: ONNX operator set of :func:`to_onnx`'s graph
OPSET = 17
#: layers in the order of the forward pass, with their kernel side
LAYERS: tuple[tuple[str, int], ...] = (
    ("e1a", 3),
    ("e1b", 3),
    ("e2a", 3),
    ("e2b", 3),
    ("e3a", 3),
    ("e3b", 3),
    ("d2", 3),
    ("d1", 3),
    ("out", 1),
)
_ALIGN = 4  # two poolings
#: weights smaller than this (in magnitude) are read as 0: the L2 penalty
#: drives unused weights towards 0 (118 of the shipped ones are ~1e-34), and
#: their products with activations could be subnormal floats, which CPUs
#: compute far slower (no difference measured with the shipped weights)
_FLUSH = 1e-20


class PixelCNN(NamedTuple):
    """Weights of the network (float32): per layer a kernel ``(k, k, Cin, Cout)``
    and a bias ``(Cout,)``; the features' mean and standard deviation."""

    mean: np.ndarray  # (F,)
    std: np.ndarray  # (F,)
    kernels: dict[str, np.ndarray]
    biases: dict[str, np.ndarray]


def _flushed(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float32).copy()
    a[np.abs(a) < _FLUSH] = 0.0
    return a


def load(path: str | Path) -> PixelCNN:
    """Read a weights file written by the training script (``.npz``);
    weights below ``_FLUSH`` in magnitude become 0."""
    with np.load(path, allow_pickle=False) as z:
        return PixelCNN(
            mean=z["mean"].astype(np.float32),
            std=z["std"].astype(np.float32),
            kernels={name: _flushed(z[f"{name}_w"]) for name, _ in LAYERS},
            biases={name: _flushed(z[f"{name}_b"]) for name, _ in LAYERS},
        )


def save(path: str | Path, model: PixelCNN, **meta: str) -> None:
    """Write ``model`` (and text entries ``meta``) as an ``.npz`` file."""
    arrays = {"mean": model.mean, "std": model.std}
    for name, _ in LAYERS:
        arrays[f"{name}_w"] = _flushed(model.kernels[name])
        arrays[f"{name}_b"] = _flushed(model.biases[name])
    arrays.update({k: np.array(v) for k, v in meta.items()})
    np.savez_compressed(path, **arrays)


@lru_cache(maxsize=1)
def default_cnn() -> PixelCNN:
    """The shipped network (trained on T98G set1-25)."""
    return load(WEIGHTS)


#: the shipped network's loader, kept if ``default_cnn`` is swapped for another
#: network (the training script's cross-validation does): only the shipped
#: network runs from the shipped ``ONNX`` file
_shipped_cnn = default_cnn


def conv(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """2-D convolution (cross-correlation, as the training framework's) of
    ``x`` ``(H, W, Cin)`` with ``kernel`` ``(k, k, Cin, Cout)``, k = 1 or 3,
    zero padding, plus ``bias``; float32 ``(H, W, Cout)``."""
    h, w, _ = x.shape
    k = kernel.shape[0]
    if k == 1:
        return np.matmul(x, kernel[0, 0]) + bias
    xp = np.pad(x, ((1, 1), (1, 1), (0, 0)))
    out = np.empty((h, w, kernel.shape[-1]), dtype=np.float32)
    out[:] = bias
    for dy in range(3):
        for dx in range(3):
            out += np.matmul(xp[dy : dy + h, dx : dx + w], kernel[dy, dx])
    return out


def _relu(a: np.ndarray) -> np.ndarray:
    return np.maximum(a, 0, out=a)


def _pool(x: np.ndarray) -> np.ndarray:
    h, w, c = x.shape
    return x.reshape(h // 2, 2, w // 2, 2, c).max(axis=(1, 3))


def _up(x: np.ndarray) -> np.ndarray:
    return np.repeat(np.repeat(x, 2, axis=0), 2, axis=1)


#: most views :func:`predict_maps_cnn` averages (the square's 8 symmetries)
MAX_VIEWS = 8


def check_views(views: int, name: str = "views") -> None:
    """Raise ``ValueError`` (naming ``name``) unless ``views`` is an integer
    from 1 to ``MAX_VIEWS``."""
    if isinstance(views, bool) or not isinstance(views, (int, np.integer)) or not 1 <= views <= MAX_VIEWS:
        raise ValueError(f"{name} must be an integer from 1 to {MAX_VIEWS}, got {views!r}")


def predict_maps_cnn(model: PixelCNN, feats: np.ndarray, views: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Foreground probability and seed map (grid px, >= 0) of classifier-grid
    features ``(Y, X, N_FEATURES)``; both float32 ``(Y, X)``.

    ``views`` > 1 averages both maps over that many views of the features
    (test-time augmentation): view ``v`` is turned by ``v mod 4`` quarter
    turns and, for ``v >= 4``, mirrored; each view's maps are turned back
    before averaging. The network was trained on crops turned and mirrored
    the same way. Costs ``views`` forward passes; with all 8 and grid sides
    that are multiples of 4 (no padding) the maps turn and mirror with the
    features (up to rounding).
    """
    check_views(views)
    feats = np.asarray(feats, dtype=np.float32)
    if views == 1:
        return _predict_view(model, feats)
    prob = np.zeros(feats.shape[:2], np.float32)
    dist = np.zeros(feats.shape[:2], np.float32)
    for v in range(views):
        turns, mirror = v % 4, v >= 4
        view = np.rot90(feats, turns)
        if mirror:
            view = view[:, ::-1]
        p, d = _predict_view(model, np.ascontiguousarray(view))
        if mirror:
            p, d = p[:, ::-1], d[:, ::-1]
        prob += np.rot90(p, -turns)
        dist += np.rot90(d, -turns)
    scale = np.float32(1.0 / views)
    return prob * scale, dist * scale


def network_input(model: PixelCNN, feats: np.ndarray) -> np.ndarray:
    """Features ``(H, W, F)`` as the network reads them: standardised by the
    training set's mean and standard deviation, padded (reflect; edge on
    grids of 4 px or less) to multiples of 4; float32 ``(H', W', F)``."""
    h, w = feats.shape[:2]
    x = (feats - model.mean) / model.std
    pad = ((0, -h % _ALIGN), (0, -w % _ALIGN), (0, 0))
    return np.pad(x, pad, mode="reflect" if min(h, w) > _ALIGN else "edge").astype(np.float32, copy=False)


def _predict_view(model: PixelCNN, feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    h, w = feats.shape[:2]
    nchw = np.ascontiguousarray(network_input(model, feats).transpose(2, 0, 1)[None])
    out = _session(model).run(None, {"x": nchw})[0][0, :, :h, :w]
    logit = np.clip(out[0], -30.0, 30.0)
    prob = (1.0 / (1.0 + np.exp(-logit))).astype(np.float32)
    return prob, np.maximum(out[1], 0).astype(np.float32)


def forward_numpy(model: PixelCNN, x: np.ndarray) -> np.ndarray:
    """The network's output ``(H, W, 2)`` (logit, seed map before clipping at
    0) for standardised features ``x`` ``(H, W, F)``, H and W multiples of 4,
    in numpy: the definition of the graph :func:`to_onnx` writes (each 3x3
    convolution as nine matrix products, :func:`conv`)."""

    def layer(name: str, a: np.ndarray) -> np.ndarray:
        return conv(a, model.kernels[name], model.biases[name])

    x = np.asarray(x, dtype=np.float32)
    e1 = _relu(layer("e1b", _relu(layer("e1a", x))))
    e2 = _relu(layer("e2b", _relu(layer("e2a", _pool(e1)))))
    e3 = _relu(layer("e3b", _relu(layer("e3a", _pool(e2)))))
    d2 = _relu(layer("d2", np.concatenate([_up(e3), e2], axis=-1)))
    d1 = _relu(layer("d1", np.concatenate([_up(d2), e1], axis=-1)))
    return layer("out", d1)


def to_onnx(model: PixelCNN) -> bytes:
    """The network as a serialised ONNX model (operator set ``OPSET``): input
    ``x`` ``(1, F, H, W)`` standardised features, H and W multiples of 4;
    output ``y`` ``(1, 2, H, W)`` as :func:`forward_numpy` (channels first).
    Needs the ``onnx`` package (the ``train`` extra); the same model gives
    the same bytes."""
    try:
        import onnx
        from onnx import TensorProto, helper, numpy_helper
    except ImportError as exc:
        raise ImportError(
            "pixel_cnn: a network other than the shipped one runs from an ONNX model written by the "
            "'onnx' package: pip install 'pyama-flow[train]'"
        ) from exc

    nodes, weights = [], []

    def node(op: str, inputs: list[str], output: str, **attrs) -> str:
        nodes.append(helper.make_node(op, inputs, [output], name=output, **attrs))
        return output

    def layer(name: str, a: str) -> str:
        kernel = model.kernels[name]  # (k, k, Cin, Cout) -> ONNX (Cout, Cin, k, k)
        k, p = kernel.shape[0], kernel.shape[0] // 2
        weights.append(numpy_helper.from_array(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)), f"{name}_w"))
        weights.append(numpy_helper.from_array(np.asarray(model.biases[name], np.float32), f"{name}_b"))
        return node("Conv", [a, f"{name}_w", f"{name}_b"], name, kernel_shape=[k, k], pads=[p, p, p, p])

    def relu(a: str) -> str:
        return node("Relu", [a], f"{a}_relu")

    def pool(a: str) -> str:
        return node("MaxPool", [a], f"{a}_pool", kernel_shape=[2, 2], strides=[2, 2])

    def up(a: str) -> str:
        return node("Resize", [a, "", "up_scales"], f"{a}_up", mode="nearest")

    def cat(a: str, b: str, name: str) -> str:
        return node("Concat", [a, b], name, axis=1)

    weights.append(numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "up_scales"))
    e1 = relu(layer("e1b", relu(layer("e1a", "x"))))
    e2 = relu(layer("e2b", relu(layer("e2a", pool(e1)))))
    e3 = relu(layer("e3b", relu(layer("e3a", pool(e2)))))
    d2 = relu(layer("d2", cat(up(e3), e2, "cat2")))
    d1 = relu(layer("d1", cat(up(d2), e1, "cat1")))
    node("Identity", [layer("out", d1)], "y")
    n_feat = int(model.mean.shape[0])
    graph = helper.make_graph(
        nodes,
        "pixel_cnn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, n_feat, "H", "W"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, "H", "W"])],
        weights,
    )
    onnx_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="pyama-flow")
    onnx_model.ir_version = 8  # not the onnx package's newest, so older onnxruntime releases read it too
    onnx.checker.check_model(onnx_model)
    return onnx_model.SerializeToString()


#: ONNX Runtime sessions of the networks used so far: id(model) -> (model, session)
_SESSIONS: dict[int, tuple[PixelCNN, object]] = {}


def _session(model: PixelCNN):
    """An ONNX Runtime session (CPU, one thread) running ``model``: the shipped
    ``ONNX`` file for :func:`default_cnn`, else :func:`to_onnx` (needs ``onnx``)."""
    hit = _SESSIONS.get(id(model))
    if hit is not None and hit[0] is model:
        return hit[1]
    import onnxruntime as ort

    data = ONNX.read_bytes() if model is _shipped_cnn() else to_onnx(model)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3  # errors only
    session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    if len(_SESSIONS) >= 8:
        _SESSIONS.clear()
    _SESSIONS[id(model)] = (model, session)
    return session
