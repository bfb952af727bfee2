"""Train the small U-Net of the "learned" watershed foreground (pixel_cnn.py).

Writes ``src/pyama_flow/segmentation/_pixel_cnn_weights.npz`` (weights, data
provenance and the cross-validation table) and the same network as the ONNX
model the segmentation runs, ``_pixel_cnn_weights.onnx``. Needs JAX, optax
and onnx (CPU is enough; ``pip install -e ".[train]"``). Run from the repository root::

    .venv/bin/python resources/segmentation/train_pixel_cnn.py [--data ../shared/data]

Data: the hand-annotated Usiigaci T98G phase-contrast frames (GitHub
oist/Usiigaci @9501d80, "Mask R-CNN/train/set1..25", MIT), as provided under
``<data>/phase_gt_segmentation/usiigaci_train``; other real frames are kept
aside by the project to judge the result and are never read here. Inputs
are the classifier-grid features exactly as at inference
(:func:`pyama_flow.segmentation.watershed.learned_features`), targets those
of the perceptrons (``train_pixel_classifier.py``): the annotated fraction of
each grid pixel (binary cross-entropy on the logit) and the distance to the
own cell's outline (squared error / 2, weight ``SEED_WEIGHT``).

Training: Adam with a cosine-decayed learning rate, ``STEPS`` steps of
``BATCH`` random ``CROP`` x ``CROP`` grid-px crops, each turned by a random
multiple of 90 degrees and mirrored at random, L2 ``L2`` on the kernels;
fixed seeds. Before the final fit on all sets it runs a **cross-validation
by set** (set k in fold (k - 1) mod ``--folds``): each fold's network is
trained on the other folds and the held-out sets are segmented with the
defaults of ``segment_watershed`` using it, so no set is scored by a
network that saw it.

``--quick`` (a smoke test: 4 sets, 2 folds, 20 steps) needs ``--out``, so it
never overwrites the shipped weights.
"""

from __future__ import annotations

import datetime
import os
import sys
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_pixel_classifier import command_line, folds_of, load, seed_target  # noqa: E402

from pyama_flow.devtools.metrics import segmentation_scores  # noqa: E402
from pyama_flow.segmentation import pixel_cnn  # noqa: E402
from pyama_flow.segmentation.maps import bin_image  # noqa: E402
from pyama_flow.segmentation.watershed import learned_features, segment_watershed  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
OUT = pixel_cnn.WEIGHTS
SETS = tuple(range(1, 26))
WIDTH = 12  # channels at the grid's resolution
STEPS = 6000
BATCH = 8
CROP = 96  # grid px, a multiple of 4
LR = 3e-3
L2 = 1e-5
SEED_WEIGHT = 0.1
SEED = 0


def frame_maps(image: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Grid features ``(Y, X, F)`` and the two target maps ``(Y, X)``."""
    feats, grid = learned_features(image)
    ny, nx = feats.shape[:2]
    cover = bin_image((truth > 0).astype(np.float32), grid)[:ny, :nx]
    return feats.astype(np.float32), cover, seed_target(truth, grid)[:ny, :nx]


def _shapes(n_features: int) -> dict[str, tuple[int, int, int, int]]:
    w1, w2, w3 = WIDTH, 2 * WIDTH, 3 * WIDTH
    cin_cout = {
        "e1a": (n_features, w1),
        "e1b": (w1, w1),
        "e2a": (w1, w2),
        "e2b": (w2, w2),
        "e3a": (w2, w3),
        "e3b": (w3, w3),
        "d2": (w3 + w2, w2),
        "d1": (w2 + w1, w1),
        "out": (w1, 2),
    }
    return {name: (k, k, *cin_cout[name]) for name, k in pixel_cnn.LAYERS}


def forward(params: dict, x):
    """The network's output ``(N, Y, X, 2)`` for standardised features ``x``
    ``(N, Y, X, F)`` in JAX (``params``: layer name -> (kernel, bias)), the
    computation :func:`pyama_flow.segmentation.pixel_cnn.predict_maps_cnn`
    repeats in numpy."""
    import jax
    import jax.numpy as jnp

    def conv(p, a):
        y = jax.lax.conv_general_dilated(a, p[0], (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return y + p[1]

    def pool(a):
        return jax.lax.reduce_window(a, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")

    def up(a):
        return jnp.repeat(jnp.repeat(a, 2, axis=1), 2, axis=2)

    r, p = jax.nn.relu, params
    e1 = r(conv(p["e1b"], r(conv(p["e1a"], x))))
    e2 = r(conv(p["e2b"], r(conv(p["e2a"], pool(e1)))))
    e3 = r(conv(p["e3b"], r(conv(p["e3a"], pool(e2)))))
    d2 = r(conv(p["d2"], jnp.concatenate([up(e3), e2], -1)))
    d1 = r(conv(p["d1"], jnp.concatenate([up(d2), e1], -1)))
    return conv(p["out"], d1)


def train(maps: list[tuple[np.ndarray, np.ndarray, np.ndarray]], steps: int, seed: int = SEED) -> pixel_cnn.PixelCNN:
    """The network fitted to ``maps`` (features, cover, seed distance per frame)."""
    import jax
    import jax.numpy as jnp
    import optax

    allx = np.concatenate([f.reshape(-1, f.shape[-1]) for f, _, _ in maps])
    mean = allx.mean(0).astype(np.float32)
    std = (allx.std(0) + 1e-6).astype(np.float32)
    xs = [((f - mean) / std).astype(np.float32) for f, _, _ in maps]
    shapes = _shapes(allx.shape[1])
    keys = jax.random.split(jax.random.PRNGKey(seed), len(shapes))
    params = {
        name: (
            jax.random.normal(key, shape, jnp.float32) * np.float32(np.sqrt(2.0 / np.prod(shape[:3]))),
            jnp.zeros(shape[-1], jnp.float32),
        )
        for key, (name, shape) in zip(keys, shapes.items())
    }

    def loss(p, x, cover, dist):
        out = forward(p, x)
        bce = optax.sigmoid_binary_cross_entropy(out[..., 0], cover).mean()
        mse = 0.5 * ((out[..., 1] - dist) ** 2).mean()
        return bce + SEED_WEIGHT * mse + L2 * sum((k**2).sum() for k, _ in p.values())

    opt = optax.adam(optax.cosine_decay_schedule(LR, steps))
    state = opt.init(params)

    @jax.jit
    def step(p, s, x, cover, dist):
        grads = jax.grad(loss)(p, x, cover, dist)
        updates, s = opt.update(grads, s, p)
        return optax.apply_updates(p, updates), s

    rng = np.random.default_rng(seed)
    crop = min(CROP, *(min(x.shape[:2]) // 4 * 4 for x in xs))
    for _ in range(steps):
        batch = []
        for _ in range(BATCH):
            j = int(rng.integers(len(xs)))
            y0 = int(rng.integers(0, xs[j].shape[0] - crop + 1))
            x0 = int(rng.integers(0, xs[j].shape[1] - crop + 1))
            window = (slice(y0, y0 + crop), slice(x0, x0 + crop))
            a = [xs[j][window], maps[j][1][window], maps[j][2][window]]
            turn, mirror = int(rng.integers(4)), rng.random() < 0.5
            a = [np.rot90(v, turn) for v in a]
            if mirror:
                a = [v[:, ::-1] for v in a]
            batch.append(a)
        params, state = step(params, state, *(jnp.asarray(np.stack([b[i] for b in batch])) for i in range(3)))
    return pixel_cnn.PixelCNN(
        mean=mean,
        std=std,
        kernels={name: np.asarray(p[0], dtype=np.float32) for name, p in params.items()},
        biases={name: np.asarray(p[1], dtype=np.float32) for name, p in params.items()},
    )


def segment_with(model: pixel_cnn.PixelCNN, image: np.ndarray, **params) -> np.ndarray:
    """``segment_watershed(image, **params)`` with ``model`` instead of the shipped network."""
    saved = pixel_cnn.default_cnn
    pixel_cnn.default_cnn = lambda: model  # the watershed looks it up at call time
    try:
        return segment_watershed(image, **params)
    finally:
        pixel_cnn.default_cnn = saved


def cross_validate(frames: dict, maps: dict, n_folds: int, steps: int) -> list[str]:
    """Per-set table of the cross-validation by set (report lines)."""
    rows: dict[int, tuple[float, ...]] = {}
    sets = tuple(sorted(frames))
    for held in folds_of(sets, n_folds):
        model = train([maps[i] for i in sets if i not in held], steps)
        for i in held:
            image, truth = frames[i]
            s = segmentation_scores(segment_with(model, image), truth)
            rows[i] = (s.f1, s.foreground_iou)
            print(f"set {i}: F1 {s.f1:.3f}, foreground IoU {s.foreground_iou:.3f}", flush=True)
    lines = [
        f"Cross-validation by set ({n_folds} folds, set k in fold (k - 1) mod {n_folds}; every set",
        "scored by a network that never saw it), segment_watershed defaults:",
        "  set   instance F1 (IoU >= 0.5)   foreground IoU",
    ]
    lines += [f"  {i:3d}   {rows[i][0]:.3f}                      {rows[i][1]:.3f}" for i in sets]
    a = np.array([rows[i] for i in sets])
    lines.append(f"  mean  {a[:, 0].mean():.3f}                      {a[:, 1].mean():.3f}")
    lines.append(f"  worst {a[:, 0].min():.3f} (set {sets[int(a[:, 0].argmin())]})            {a[:, 1].min():.3f}")
    return lines


def main() -> None:
    args = command_line(__doc__, OUT, "20 steps", "weights file to write (.npz)")
    sets, n_folds, steps = SETS, args.folds, STEPS
    if args.quick:
        sets, n_folds, steps = (1, 2, 3, 4), 2, 20
    frames = {i: load(args.data, i) for i in sets}
    maps = {i: frame_maps(*frames[i]) for i in sets}
    lines = cross_validate(frames, maps, n_folds, steps) if n_folds > 1 else []
    model = train([maps[i] for i in sets], steps)
    report = "\n".join(lines)
    print(report)
    if not args.no_write:
        about = (
            f"Generated by resources/segmentation/train_pixel_cnn.py on {datetime.date.today().isoformat()}. "
            "Training data: hand-annotated Usiigaci T98G phase contrast (GitHub oist/Usiigaci @9501d80, "
            f'"Mask R-CNN/train", MIT), sets {sets[0]}-{sets[-1]} ({len(sets)} frames, 1022 x 1024). '
            f"U-Net width {WIDTH}, {steps} Adam steps of {BATCH} crops of {CROP} grid px, lr {LR} "
            f"(cosine), L2 {L2}, seed-map weight {SEED_WEIGHT}, seed {SEED}."
        )
        pixel_cnn.save(args.out, model, about=about, report=report)
        # the same network as the ONNX model the segmentation runs (pixel_cnn.ONNX)
        onnx_out = Path(args.out).with_suffix(".onnx")
        onnx_out.write_bytes(pixel_cnn.to_onnx(pixel_cnn.load(args.out)))
        print(f"wrote {args.out} and {onnx_out}")


if __name__ == "__main__":
    main()
