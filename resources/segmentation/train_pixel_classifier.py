"""Train the pixel classifier and seed map of the "learned" watershed foreground.

Writes ``src/pyama_flow/segmentation/_pixel_mlp_weights.py`` (weights plus
provenance and the cross-validation table). Run from the repository root::

    .venv/bin/python resources/segmentation/train_pixel_classifier.py [--data ../shared/data]

Data: the hand-annotated Usiigaci T98G phase-contrast frames (GitHub
oist/Usiigaci @9501d80, "Mask R-CNN/train/set1..25", MIT), as provided under
``<data>/phase_gt_segmentation/usiigaci_train``. Other real frames are kept
aside by the project to judge the result and are never read here. Features
are computed exactly as at inference
(:func:`pyama_flow.segmentation.watershed.learned_features`, default
arguments, i.e. with the estimated cell diameter).

Two perceptrons on the same features (one hidden layer, ReLU):

- **foreground**: sigmoid output, binary cross-entropy against the annotated
  fraction of each classifier-grid pixel (soft target);
- **seed map**: linear output, squared error against each pixel's distance
  (classifier-grid px, clipped to ``SEED_CLIP``) to the outline of its own
  annotated cell, the outline including the line where it touches another
  cell (block mean over the grid pixel; 0 on the background).

Both are fitted with Adam, full data, fixed seed, single-threaded BLAS, so
the script is deterministic on one machine. Before the final fit on all
sets it runs a **cross-validation by set**: the sets are dealt into
``--folds`` folds (set k goes to fold (k - 1) mod folds); for each fold
both models are trained on the other folds and the held-out sets are
segmented with the defaults of ``segment_watershed`` (so no set is ever
scored by a model that saw it). The table reports, per set, instance F1
(IoU >= 0.5) and foreground IoU of the defaults (learned seed map) and of
the same fold's foreground with the previous split (``seed_map="mask"``).

``--quick`` (a smoke test: 4 sets, 2 folds, 2 epochs) needs ``--out``, so it
never overwrites the shipped weights.
"""

from __future__ import annotations

import argparse
import datetime
import os
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
from scipy import ndimage as ndi  # noqa: E402

from pyama_flow.devtools.metrics import segmentation_scores  # noqa: E402
from pyama_flow.segmentation import pixel_classifier as pc  # noqa: E402
from pyama_flow.segmentation.maps import bin_image  # noqa: E402
from pyama_flow.segmentation.watershed import learned_features, segment_watershed  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "src" / "pyama_flow" / "segmentation" / "_pixel_mlp_weights.py"
SETS = tuple(range(1, 26))
FOLDS = 5
HIDDEN = 32
EPOCHS = 40  # foreground
SEED_EPOCHS = 30  # seed map
BATCH = 1024
LR = 3e-3
L2 = 1e-4
SEED = 0


def load(data: Path, i: int) -> tuple[np.ndarray, np.ndarray]:
    """Frame and instance labels of Usiigaci set ``i``."""
    import tifffile
    from skimage import io

    root = data / "phase_gt_segmentation" / "usiigaci_train"
    return tifffile.imread(root / f"set{i}_raw.tif"), io.imread(root / f"set{i}_instances_ids.png")


def seed_target(truth: np.ndarray, grid: int) -> np.ndarray:
    """Distance (grid px, clipped to ``pc.SEED_CLIP``) of each pixel to the
    outline of its own cell, block-averaged over ``grid x grid`` pixels."""
    from skimage.segmentation import find_boundaries

    inner = (truth > 0) & ~find_boundaries(truth, mode="inner")
    dist = ndi.distance_transform_edt(inner).astype(np.float32) / np.float32(grid)
    return np.minimum(bin_image(dist, grid), np.float32(pc.SEED_CLIP))


def frame_xy(image: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features ``(n, F)`` and the two targets (foreground fraction, seed distance)."""
    feats, grid = learned_features(image)
    ny, nx = feats.shape[:2]
    cover = bin_image((truth > 0).astype(np.float32), grid)[:ny, :nx]
    dist = seed_target(truth, grid)[:ny, :nx]
    return feats.reshape(-1, feats.shape[-1]), cover.ravel(), dist.ravel()


def train(x: np.ndarray, y: np.ndarray, loss: str, epochs: int, seed: int = SEED) -> pc.PixelMLP:
    """Adam on mean binary cross-entropy (``loss="bce"``, sigmoid output, soft
    targets) or mean squared error / 2 (``"mse"``, linear output), + L2 on weights."""
    rng = np.random.default_rng(seed)
    mean = x.mean(0)
    std = x.std(0) + 1e-6
    a = ((x - mean) / std).astype(np.float64)
    n, nf = a.shape
    params = [
        rng.normal(size=(nf, HIDDEN)) / np.sqrt(nf),
        np.zeros(HIDDEN),
        rng.normal(size=HIDDEN) / np.sqrt(HIDDEN),
        np.zeros(1),
    ]
    m1 = [np.zeros_like(p) for p in params]
    m2 = [np.zeros_like(p) for p in params]
    step = 0
    for _ in range(epochs):
        order = rng.permutation(n)
        for start in range(0, n, BATCH):
            idx = order[start : start + BATCH]
            xb, yb = a[idx], y[idx]
            z1 = xb @ params[0] + params[1]
            h = np.maximum(z1, 0)
            out = h @ params[2] + params[3][0]
            if loss == "bce":
                out = 1 / (1 + np.exp(-np.clip(out, -30, 30)))
            g = (out - yb) / len(idx)  # the same form for both losses
            gh = np.outer(g, params[2]) * (z1 > 0)
            grads = [xb.T @ gh + L2 * params[0], gh.sum(0), h.T @ g + L2 * params[2], np.array([g.sum()])]
            step += 1
            for j, gr in enumerate(grads):
                m1[j] = 0.9 * m1[j] + 0.1 * gr
                m2[j] = 0.999 * m2[j] + 0.001 * gr * gr
                params[j] -= LR * (m1[j] / (1 - 0.9**step)) / (np.sqrt(m2[j] / (1 - 0.999**step)) + 1e-8)
    return pc.PixelMLP(
        mean=mean.astype(np.float32),
        std=std.astype(np.float32),
        w1=params[0].astype(np.float32),
        b1=params[1].astype(np.float32),
        w2=params[2].astype(np.float32),
        b2=float(params[3][0]),
    )


def train_pair(xy: dict, sets: list[int], epochs: tuple[int, int]) -> tuple[pc.PixelMLP, pc.PixelMLP]:
    """Foreground and seed-map models trained on ``sets``."""
    x = np.concatenate([xy[i][0] for i in sets])
    fg = train(x, np.concatenate([xy[i][1] for i in sets]), "bce", epochs[0])
    seed = train(x, np.concatenate([xy[i][2] for i in sets]), "mse", epochs[1])
    return fg, seed


def segment_with(models: tuple[pc.PixelMLP, pc.PixelMLP], image: np.ndarray, **params) -> np.ndarray:
    """``segment_watershed(image, classifier="perceptron", **params)`` with these
    models instead of the shipped ones."""
    saved = pc.default_model, pc.default_seed_model
    pc.default_model = lambda: models[0]  # the watershed imports them at call time
    pc.default_seed_model = lambda: models[1]
    try:
        return segment_watershed(image, **{"classifier": "perceptron", **params})
    finally:
        pc.default_model, pc.default_seed_model = saved


def folds_of(sets: tuple[int, ...], n_folds: int) -> list[list[int]]:
    """Sets dealt into ``n_folds`` folds: the k-th set goes to fold k mod n_folds."""
    return [list(sets[j::n_folds]) for j in range(n_folds)]


def cross_validate(frames: dict, xy: dict, n_folds: int, epochs: tuple[int, int]) -> list[str]:
    """Per-set table of the cross-validation by set (report lines)."""
    rows: dict[int, tuple[float, ...]] = {}
    sets = tuple(sorted(frames))
    for held in folds_of(sets, n_folds):
        models = train_pair(xy, [i for i in sets if i not in held], epochs)
        for i in held:
            image, truth = frames[i]
            new = segmentation_scores(segment_with(models, image), truth)
            old = segmentation_scores(segment_with(models, image, seed_map="mask"), truth)
            rows[i] = (new.f1, new.foreground_iou, old.f1, old.foreground_iou)
    lines = [
        f"Cross-validation by set ({n_folds} folds, set k in fold (k - 1) mod {n_folds}; every set",
        "scored by models that never saw it): instance F1 (IoU >= 0.5) / foreground IoU",
        "  set   defaults (learned seeds)   seed_map=mask (previous split)",
    ]
    for i in sets:
        r = rows[i]
        lines.append(f"  {i:3d}   F1 {r[0]:.3f}  fg IoU {r[1]:.3f}    F1 {r[2]:.3f}  fg IoU {r[3]:.3f}")
    a = np.array([rows[i] for i in sets])
    lines.append(
        f"  mean  F1 {a[:, 0].mean():.3f}  fg IoU {a[:, 1].mean():.3f}    "
        f"F1 {a[:, 2].mean():.3f}  fg IoU {a[:, 3].mean():.3f}"
    )
    lines.append(
        f"  worst F1 {a[:, 0].min():.3f}  fg IoU {a[:, 1].min():.3f}    "
        f"F1 {a[:, 2].min():.3f}  fg IoU {a[:, 3].min():.3f}"
    )
    return lines


def _fmt(a: np.ndarray, level: int = 0) -> str:
    """Python literal of a 1-D / 2-D array, lines under 100 characters."""
    import textwrap

    pad = "    " * level
    a = np.asarray(a, dtype=np.float64)
    if a.ndim == 2:
        return "[\n" + "".join(f"{pad}    {_fmt(row, level + 1)},\n" for row in a) + f"{pad}]"
    body = ", ".join(f"{v:.7g}" for v in a)
    lines = textwrap.wrap(body, width=92 - len(pad))
    if len(lines) == 1 and len(body) < 80:
        return f"[{body}]"
    return "[\n" + "".join(f"{pad}    {line}\n" for line in lines) + f"{pad}]"


def _model_text(model: pc.PixelMLP, prefix: str) -> str:
    return (
        f"{prefix}MEAN = {_fmt(model.mean)}\n{prefix}STD = {_fmt(model.std)}\n"
        f"{prefix}W1 = {_fmt(model.w1)}\n{prefix}B1 = {_fmt(model.b1)}\n"
        f"{prefix}W2 = {_fmt(model.w2)}\n{prefix}B2 = {model.b2:.7g}\n"
    )


def write_weights(out: Path, models: tuple[pc.PixelMLP, pc.PixelMLP], sets: tuple[int, ...], report: str) -> None:
    """Write the weights module (both models, provenance, report)."""
    names = "\n".join(f"    {n!r}," for n in pc.FEATURE_NAMES)
    text = f'''"""Weights of the T98G pixel classifier and seed map (generated; do not edit).

Generated by resources/segmentation/train_pixel_classifier.py on {datetime.date.today().isoformat()}.
Training data: hand-annotated Usiigaci T98G phase contrast (GitHub oist/Usiigaci
@9501d80, "Mask R-CNN/train", MIT), sets {sets[0]}-{sets[-1]} ({len(sets)} frames, 1022 x 1024).
Models: two {pc.N_FEATURES}-{HIDDEN}-1 perceptrons, ReLU; foreground: sigmoid, binary
cross-entropy on soft targets (annotated fraction of each classifier-grid pixel),
{EPOCHS} epochs; seed map (SEED_*): linear, squared error on the distance to the own
cell's outline (grid px, clipped to {pc.SEED_CLIP:g}), {SEED_EPOCHS} epochs. Adam, batch {BATCH},
lr {LR}, L2 {L2}, seed {SEED}.

{report}
"""

FEATURE_NAMES = (
{names}
)
{_model_text(models[0], "")}{_model_text(models[1], "SEED_")}'''
    out.write_text(text)


def command_line(doc: str, out: Path, quick: str, out_help: str) -> argparse.Namespace:
    """The options both training scripts take (``doc``: the script's
    docstring; ``out``: its shipped weights, which ``--quick`` refuses to
    overwrite; ``quick``: what the smoke test trains)."""
    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--folds", type=int, default=FOLDS, help="folds of the cross-validation by set (0 = none)")
    ap.add_argument("--no-write", action="store_true", help="only report, keep the shipped weights")
    ap.add_argument("--quick", action="store_true", help=f"smoke test: sets 1-4, 2 folds, {quick} (needs --out)")
    ap.add_argument("--out", type=Path, default=out, help=out_help)
    args = ap.parse_args()
    if args.quick and args.out.resolve() == out.resolve():
        ap.error("--quick needs --out (it must not overwrite the shipped weights)")
    return args


def main() -> None:
    args = command_line(__doc__, OUT, "2 epochs", "weights module to write")
    sets, n_folds, epochs = SETS, args.folds, (EPOCHS, SEED_EPOCHS)
    if args.quick:
        sets, n_folds, epochs = (1, 2, 3, 4), 2, (2, 2)
    frames = {i: load(args.data, i) for i in sets}
    xy = {i: frame_xy(*frames[i]) for i in sets}
    lines = cross_validate(frames, xy, n_folds, epochs) if n_folds > 1 else []
    models = train_pair(xy, list(sets), epochs)
    report = "\n".join(lines)
    print(report)
    if not args.no_write:
        write_weights(args.out, models, sets, report)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
