"""Train the pixel classifier of the "learned" watershed foreground.

Writes ``src/pyama_flow/segmentation/_pixel_mlp_weights.py`` (weights plus
provenance). Run from the repository root::

    .venv/bin/python resources/segmentation/train_pixel_classifier.py [--data ../shared/data]

Data: the hand-annotated Usiigaci T98G phase-contrast frames (GitHub
oist/Usiigaci @9501d80, "Mask R-CNN/train/set1..3", MIT), as provided under
``<data>/phase_gt_segmentation/usiigaci_train``. Only set1 and set2 are used;
set3 is the hold-out frame of the benchmark and the tests and is never read
here. Features are computed exactly as at inference
(:func:`pyama_flow.segmentation.watershed.learned_features`, default
arguments, i.e. with the estimated cell diameter); the target of a
classifier-grid pixel is the fraction of it covered by annotated cells.

The model is a 15-16-1 perceptron (ReLU, sigmoid), fitted with Adam on the
binary cross-entropy against that soft target, full data, fixed seed, so the
script is deterministic on one machine. It also reports a two-fold
cross-validation (train on one frame, score the segmentation of the other)
so the quality on unseen frames is known without touching set3.
"""

from __future__ import annotations

import argparse
import datetime
import os
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

from pyama_flow.metrics import segmentation_scores  # noqa: E402
from pyama_flow.segmentation import pixel_classifier as pc  # noqa: E402
from pyama_flow.segmentation.watershed import bin_image, learned_features, segment_watershed  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "src" / "pyama_flow" / "segmentation" / "_pixel_mlp_weights.py"
TRAIN_SETS = (1, 2)
HIDDEN = 16
EPOCHS = 60
BATCH = 1024
LR = 3e-3
L2 = 1e-4
SEED = 0


def load(data: Path, i: int) -> tuple[np.ndarray, np.ndarray]:
    import tifffile
    from skimage import io

    root = data / "phase_gt_segmentation" / "usiigaci_train"
    return tifffile.imread(root / f"set{i}_raw.tif"), io.imread(root / f"set{i}_instances_ids.png")


def frame_xy(image: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    feats, grid = learned_features(image)
    cover = bin_image((truth > 0).astype(np.float32), grid)[: feats.shape[0], : feats.shape[1]]
    return feats.reshape(-1, feats.shape[-1]), cover.ravel()


def train(x: np.ndarray, y: np.ndarray, seed: int = SEED) -> pc.PixelMLP:
    """Adam on mean binary cross-entropy with soft targets, + L2 on weights."""
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
    for _ in range(EPOCHS):
        order = rng.permutation(n)
        for start in range(0, n, BATCH):
            idx = order[start : start + BATCH]
            xb, yb = a[idx], y[idx]
            z1 = xb @ params[0] + params[1]
            h = np.maximum(z1, 0)
            p = 1 / (1 + np.exp(-np.clip(h @ params[2] + params[3][0], -30, 30)))
            g = (p - yb) / len(idx)
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


def pixel_iou(model: pc.PixelMLP, x: np.ndarray, y: np.ndarray) -> float:
    p = pc.predict_proba(model, x) > 0.5
    t = y >= 0.5
    return float(np.count_nonzero(p & t) / max(np.count_nonzero(p | t), 1))


def segment_with(model: pc.PixelMLP, image: np.ndarray) -> np.ndarray:
    saved = pc.default_model
    pc.default_model = lambda: model  # the watershed imports it at call time
    try:
        return segment_watershed(image, foreground="learned")
    finally:
        pc.default_model = saved


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


def write_weights(model: pc.PixelMLP, report: str) -> None:
    names = "\n".join(f"    {n!r}," for n in pc.FEATURE_NAMES)
    text = f'''"""Weights of the T98G pixel classifier (generated; do not edit).

Generated by resources/segmentation/train_pixel_classifier.py on {datetime.date.today().isoformat()}.
Training data: hand-annotated Usiigaci T98G phase contrast (GitHub oist/Usiigaci
@9501d80, "Mask R-CNN/train", MIT), frames set{TRAIN_SETS[0]} and set{TRAIN_SETS[1]} only (set3 is the
benchmark / test hold-out). Model: {pc.N_FEATURES}-{HIDDEN}-1 perceptron, ReLU, sigmoid; Adam,
{EPOCHS} epochs, batch {BATCH}, lr {LR}, L2 {L2}, seed {SEED}; soft targets
(annotated fraction of each classifier-grid pixel).

{report}
"""

FEATURE_NAMES = (
{names}
)
MEAN = {_fmt(model.mean)}
STD = {_fmt(model.std)}
W1 = {_fmt(model.w1)}
B1 = {_fmt(model.b1)}
W2 = {_fmt(model.w2)}
B2 = {model.b2:.7g}
'''
    OUT.write_text(text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--no-write", action="store_true", help="only report, keep the shipped weights")
    args = ap.parse_args()
    frames = {i: load(args.data, i) for i in TRAIN_SETS}
    xy = {i: frame_xy(*frames[i]) for i in TRAIN_SETS}
    lines = ["Two-fold cross-validation (train on one frame, score the other):"]
    for tr, te in ((1, 2), (2, 1)):
        model = train(*xy[tr])
        s = segmentation_scores(segment_with(model, frames[te][0]), frames[te][1])
        lines.append(
            f"  set{tr} -> set{te}: pixel IoU {pixel_iou(model, *xy[te]):.3f}, "
            f"F1 {s.f1:.3f}, foreground IoU {s.foreground_iou:.3f}"
        )
    x = np.concatenate([xy[i][0] for i in TRAIN_SETS])
    y = np.concatenate([xy[i][1] for i in TRAIN_SETS])
    model = train(x, y)
    for i in TRAIN_SETS:
        s = segmentation_scores(segment_with(model, frames[i][0]), frames[i][1])
        lines.append(f"Final model on its training frame set{i}: F1 {s.f1:.3f}, foreground IoU {s.foreground_iou:.3f}")
    report = "\n".join(lines)
    print(report)
    if not args.no_write:
        write_weights(model, report)
        print(f"wrote {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
