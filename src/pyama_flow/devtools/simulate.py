"""Synthetic mRNA-transfection time-lapse with ground truth (the built-in demo).

Each FOV holds textured, moving cells, kept ``min_gap`` px apart (the demo:
32 px, never touching; 0: cells touch and may overlap by up to 4 px, the
later cell drawn on top). Channel 0 is phase-contrast-like (dark textured
cell bodies with a bright halo on a flat, slightly noisy background); channel
1 is fluorescence: an uneven smooth background plus, per cell, protein
following the ``maturation`` model with known per-cell parameters (SPEC step
6), spread over the cell's pixels and blurred by the optics' point-spread
function, a Gaussian of ``psf_sigma`` px (0, the demo: no blur). The blur
moves light past the cell's outline, into the background and into touching
neighbours, and keeps the total: the true ``intensity_total`` is the cell's
light before the blur.

Outputs are streamed plane by plane, so any size can be written:
- an OME-TIFF, one image series per FOV, axes TCYX, uint16, with channel
  names, pixel size and per-plane DeltaT (real time stamps);
- ``truth/labels_fov{NNN}.tif``: true cell ids per frame (stable over time);
- ``truth/params.csv``: ``fov, cell, t0, ktl, delta, km, beta, offset`` (t0 in h);
- ``truth/traces.csv``: ``fov, cell, frame, time, area, intensity_total`` (true
  background-free total fluorescence of each cell, time in minutes).
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import tifffile
from scipy import ndimage as ndi

from pyama_flow.io.atomic import atomic_path
from pyama_flow.io.stacks import write_stack

KM = 1.28
BETA = 5.22e-3


def maturation_curve(t_h: np.ndarray, t0: float, ktl: float, delta: float,
                     km: float = KM, beta: float = BETA) -> np.ndarray:
    """Mature protein of the maturation model (SPEC), by direct ODE-exact sum.

    Used as the simulator's truth; written independently of ``pyama_flow.fitting.models``
    (with matrix exponentials of the linear ODE) so that tests of the fitter
    compare against an independent implementation.
    """
    t_h = np.asarray(t_h, dtype=np.float64)
    dt = np.clip(t_h - t0, 0.0, None)
    # linear system x' = A x, x = (m, g_u, g), m(0) = 1
    a = np.array([[-delta, 0.0, 0.0], [ktl, -(km + beta), 0.0], [0.0, km, -beta]])
    w, v = np.linalg.eig(a)
    if np.min(np.abs(np.subtract.outer(w, w)[~np.eye(3, dtype=bool)])) < 1e-9:
        # degenerate eigenvalues: integrate with scipy's expm per time point
        from scipy.linalg import expm

        return np.array([(expm(a * d) @ np.array([1.0, 0.0, 0.0]))[2] for d in dt])
    coef = np.linalg.solve(v, np.array([1.0, 0.0, 0.0]))
    out = (v[2] * coef * np.exp(np.outer(dt, w))).sum(axis=1).real
    return np.where(t_h > t0, out, 0.0)


@dataclass
class SimulationConfig:
    """Size and content of a synthetic experiment (all lengths in pixels)."""

    n_fovs: int = 2
    n_frames: int = 40
    height: int = 320
    width: int = 320
    n_cells: int = 8
    frame_interval_min: float = 20.0
    radius_min: float = 13.0
    radius_max: float = 17.0
    margin: int = 56  # cells stay this far from the border (reference filter: 50)
    min_gap: float = 32.0  # px between cell edges (LOG-STD's 19 px closing merges closer cells)
    speed: float = 0.8  # px per frame
    pixel_size_um: float = 0.65
    seed: int = 0
    #: codec of the OME-TIFF planes: "zlib" (deflate level 1, a small file) or
    #: None (uncompressed, as microscopes write their files)
    compression: str | None = "zlib"
    # phase contrast
    pc_background: float = 1000.0
    pc_noise: float = 4.0
    pc_body: float = 880.0
    pc_texture: float = 70.0
    pc_halo: float = 180.0
    # fluorescence
    fl_background: float = 300.0
    fl_gradient: float = 40.0
    fl_noise: float = 3.0
    #: standard deviation (px) of the Gaussian point-spread function blurring
    #: the fluorescence signal (0: none)
    psf_sigma: float = 0.0
    ktl_range: tuple[float, float] = (5e3, 2e4)
    delta_range: tuple[float, float] = (0.08, 0.3)
    t0_range: tuple[float, float] = (0.1, 0.8)


def _place(rng: np.random.Generator, cfg: SimulationConfig, radii: np.ndarray) -> np.ndarray:
    """Non-overlapping start positions (y, x) inside the margin."""
    pos = np.zeros((radii.size, 2))
    lo = np.array([cfg.margin, cfg.margin], dtype=float) + radii.max()
    hi = np.array([cfg.height, cfg.width], dtype=float) - cfg.margin - radii.max()
    if np.any(hi <= lo):
        raise ValueError(f"frame {cfg.height}x{cfg.width} too small for margin {cfg.margin}")
    for _attempt in range(200):  # random sequential placement, restarted when stuck
        for i in range(radii.size):
            for _ in range(500):
                p = rng.uniform(lo, hi)
                if all(np.hypot(*(p - pos[j])) > radii[i] + radii[j] + cfg.min_gap for j in range(i)):
                    pos[i] = p
                    break
            else:
                break
        else:
            return pos
    raise ValueError(
        f"cannot place {radii.size} cells in a {cfg.height}x{cfg.width} frame; "
        "lower n_cells or enlarge the frame"
    )
    return pos


def _trajectories(rng: np.random.Generator, cfg: SimulationConfig, radii: np.ndarray) -> np.ndarray:
    """(T, n, 2) positions: slow persistent random walk, no contact, inside margin."""
    n = radii.size
    pos = _place(rng, cfg, radii)
    heading = rng.uniform(0, 2 * np.pi, n)
    out = np.zeros((cfg.n_frames, n, 2))
    lo = cfg.margin + radii
    hi_y = cfg.height - cfg.margin - radii
    hi_x = cfg.width - cfg.margin - radii
    for t in range(cfg.n_frames):
        out[t] = pos
        heading += rng.normal(0, 0.4, n)
        step = cfg.speed * np.stack([np.sin(heading), np.cos(heading)], axis=1)
        for i in range(n):
            new = pos[i] + step[i]
            inside = lo[i] <= new[0] <= hi_y[i] and lo[i] <= new[1] <= hi_x[i]
            dist = np.hypot(*(new - pos).T)
            dist[i] = np.inf
            free = bool(np.all(dist > radii[i] + radii + cfg.min_gap - 4))
            if inside and free:
                pos[i] = new
            else:
                heading[i] += np.pi
    return out


def _cell_masks(shape: tuple[int, int], centres: np.ndarray, radii: np.ndarray,
                aspect: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """Label image of ellipses (ids 1..n)."""
    labels = np.zeros(shape, dtype=np.uint16)
    for i, ((cy, cx), r) in enumerate(zip(centres, radii)):
        a, b = r * aspect[i], r / aspect[i]
        ext = int(np.ceil(max(a, b))) + 1
        y0, y1 = max(int(cy) - ext, 0), min(int(cy) + ext + 2, shape[0])
        x0, x1 = max(int(cx) - ext, 0), min(int(cx) + ext + 2, shape[1])
        yy, xx = np.mgrid[y0:y1, x0:x1]
        dy, dx = yy - cy, xx - cx
        ca, sa = np.cos(angle[i]), np.sin(angle[i])
        u = (dx * ca + dy * sa) / a
        v = (-dx * sa + dy * ca) / b
        inside = u * u + v * v <= 1.0
        labels[y0:y1, x0:x1][inside] = i + 1
    return labels


def fluorescence_background(cfg: SimulationConfig) -> np.ndarray:
    """The smooth uneven illumination of the fluorescence channel (float64)."""
    yy, xx = np.mgrid[0 : cfg.height, 0 : cfg.width].astype(np.float64)
    r2 = (yy - 0.4 * cfg.height) ** 2 + (xx - 0.6 * cfg.width) ** 2
    bump = np.exp(-r2 / (2 * (0.45 * max(cfg.height, cfg.width)) ** 2))
    return cfg.fl_background + cfg.fl_gradient * (0.5 * xx / cfg.width + bump)


@dataclass
class _Fov:
    """One simulated FOV's cells: shapes, trajectories, protein curves, noise seed."""

    radii: np.ndarray  # (n,) px
    aspect: np.ndarray  # (n,) ellipse aspect
    angle0: np.ndarray  # (n,) orientation at frame 0 (turns 0.01 rad per frame)
    traj: np.ndarray  # (T, n, 2) centres (y, x)
    curves: np.ndarray  # (n, T) true total protein per frame
    seed: int  # seed of the frames' texture and noise

    def labels(self, cfg: SimulationConfig, t: int) -> np.ndarray:
        """True label image (cell ids 1..n) of frame ``t``."""
        return _cell_masks((cfg.height, cfg.width), self.traj[t], self.radii, self.aspect, self.angle0 + 0.01 * t)


def _simulate_fov(rng: np.random.Generator, cfg: SimulationConfig, fov: int,
                  times_h: np.ndarray) -> tuple[_Fov, list[dict]]:
    """Draw one FOV's cells and their maturation parameters.

    Returns the FOV and its rows of ``truth/params.csv``.
    """
    radii = rng.uniform(cfg.radius_min, cfg.radius_max, cfg.n_cells)
    aspect = rng.uniform(1.0, 1.25, cfg.n_cells)
    angle0 = rng.uniform(0, np.pi, cfg.n_cells)
    traj = _trajectories(rng, cfg, radii)
    t0 = rng.uniform(*cfg.t0_range, cfg.n_cells)
    ktl = np.exp(rng.uniform(*np.log(cfg.ktl_range), cfg.n_cells))
    delta = np.exp(rng.uniform(*np.log(cfg.delta_range), cfg.n_cells))
    curves = np.stack(
        [maturation_curve(times_h, t0[i], ktl[i], delta[i]) for i in range(cfg.n_cells)]
    )
    rows = [dict(fov=fov, cell=i + 1, t0=t0[i], ktl=ktl[i], delta=delta[i], km=KM, beta=BETA, offset=0.0)
            for i in range(cfg.n_cells)]
    return _Fov(radii, aspect, angle0, traj, curves, int(rng.integers(2**31))), rows


def phase_contrast(labels: np.ndarray, rng: np.random.Generator, cfg: SimulationConfig) -> np.ndarray:
    """Phase-contrast-like float64 image of a label image (not yet rounded).

    Flat noisy background (``pc_background`` +- ``pc_noise``), dark textured
    cell bodies (``pc_body`` +- ``pc_texture``) and a bright halo
    (+``pc_halo``) in a 3 px ring outside the cells. Draws two normal
    fields from ``rng`` (texture, then noise).
    """
    cell = labels > 0
    shape = labels.shape
    texture = ndi.gaussian_filter(rng.normal(0, 1, shape), 1.0)
    texture *= cfg.pc_texture / (texture.std() + 1e-12)
    ring = ndi.binary_dilation(cell, iterations=3) & ~cell
    pc = cfg.pc_background + rng.normal(0, cfg.pc_noise, shape)
    pc[cell] = cfg.pc_body + texture[cell]
    pc[ring] += cfg.pc_halo * ndi.gaussian_filter(ring.astype(float), 1.0)[ring]
    return pc


def _fluorescence(labels: np.ndarray, amounts: np.ndarray, bg: np.ndarray, rng: np.random.Generator,
                  cfg: SimulationConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fluorescence float64 image: background + each cell's protein spread evenly, blurred, + noise.

    Parameters
    ----------
    labels : (Y, X) cell ids 1..n
    amounts : (n,) total protein of each cell
    bg : (Y, X) background (:func:`fluorescence_background`)

    Returns
    -------
    fl : (Y, X) image (not yet rounded)
    areas : (n,) pixels of each cell
    totals : (n + 1,) light of each id before the blur (index 0: background)
    """
    n = amounts.size
    areas = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    per_px = np.zeros(n + 1)
    per_px[1:] = amounts / np.maximum(areas, 1)
    signal = per_px[labels]
    blurred = ndi.gaussian_filter(signal, cfg.psf_sigma, mode="constant") \
        if cfg.psf_sigma > 0 else signal
    fl = bg + blurred + rng.normal(0, cfg.fl_noise, labels.shape)
    totals = np.bincount(labels.ravel(), weights=signal.ravel(), minlength=n + 1)
    return fl, areas, totals


def to_uint16(image: np.ndarray) -> np.ndarray:
    """Round and clip a float image to uint16."""
    return np.clip(np.rint(image), 0, 65535).astype(np.uint16)


def _fov_planes(cfg: SimulationConfig, index: int, fov: _Fov, bg: np.ndarray, times_min: np.ndarray,
                trace_rows: list[dict]):
    """Yield the FOV's uint16 planes in TC order (phase, fluorescence per frame).

    Appends each frame's rows of ``truth/traces.csv`` to ``trace_rows`` as it goes.
    """
    frng = np.random.default_rng(fov.seed)
    for t in range(cfg.n_frames):
        labels = fov.labels(cfg, t)
        pc = phase_contrast(labels, frng, cfg)
        fl, areas, totals = _fluorescence(labels, fov.curves[:, t], bg, frng, cfg)
        for i in range(cfg.n_cells):
            trace_rows.append(dict(fov=index, cell=i + 1, frame=t, time=times_min[t],
                                   area=int(areas[i]), intensity_total=float(totals[i + 1])))
        yield to_uint16(pc)
        yield to_uint16(fl)


def _ome_metadata(cfg: SimulationConfig, index: int, times_min: np.ndarray) -> dict:
    """OME metadata of one FOV's image series (channel names, pixel size, DeltaT)."""
    n_planes = cfg.n_frames * 2
    return {
        "axes": "TCYX",
        # tifffile draws a random UUID otherwise: the same config gives the same bytes
        "UUID": str(uuid.uuid5(uuid.NAMESPACE_OID, repr(cfg))),
        "Name": f"FOV {index}",
        "Channel": {"Name": ["Phase", "GFP"]},
        "PhysicalSizeX": cfg.pixel_size_um,
        "PhysicalSizeXUnit": "µm",
        "PhysicalSizeY": cfg.pixel_size_um,
        "PhysicalSizeYUnit": "µm",
        "Plane": {
            "DeltaT": [float(times_min[i // 2] * 60) for i in range(n_planes)],
            "DeltaTUnit": ["s"] * n_planes,
        },
    }


def simulate_experiment(out_path: str | os.PathLike, truth_dir: str | os.PathLike,
                        cfg: SimulationConfig | None = None) -> dict[str, pd.DataFrame]:
    """Write a synthetic experiment (OME-TIFF) and its ground truth.

    Deterministic given ``cfg.seed``. Returns the truth tables
    (``params``, ``traces``).
    """
    cfg = cfg or SimulationConfig()
    truth_dir = Path(truth_dir)
    truth_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(cfg.seed)
    times_min = np.arange(cfg.n_frames) * cfg.frame_interval_min
    shape = (cfg.height, cfg.width)
    params_rows: list[dict] = []
    fovs: list[_Fov] = []
    for index in range(cfg.n_fovs):
        fov, rows = _simulate_fov(rng, cfg, index, times_min / 60.0)
        fovs.append(fov)
        params_rows += rows

    bg = fluorescence_background(cfg)
    trace_rows: list[dict] = []
    with atomic_path(out_path) as tmp:
        with tifffile.TiffWriter(tmp, ome=True, bigtiff=_needs_bigtiff(cfg)) as tw:
            for index, fov in enumerate(fovs):
                tw.write(
                    _fov_planes(cfg, index, fov, bg, times_min, trace_rows),
                    shape=(cfg.n_frames, 2, *shape),
                    dtype=np.uint16,
                    compression=cfg.compression,
                    compressionargs={"level": 1} if cfg.compression == "zlib" else None,
                    metadata=_ome_metadata(cfg, index, times_min),
                )
                write_stack(truth_dir / f"labels_fov{index:03d}.tif",
                            (fov.labels(cfg, t) for t in range(cfg.n_frames)), cfg.n_frames, shape, np.uint16)
    params = pd.DataFrame(params_rows)
    traces = pd.DataFrame(trace_rows).sort_values(["fov", "cell", "frame"]).reset_index(drop=True)
    params.to_csv(truth_dir / "params.csv", index=False, float_format="%.9g")
    traces.to_csv(truth_dir / "traces.csv", index=False, float_format="%.6f")
    return {"params": params, "traces": traces}


def _needs_bigtiff(cfg: SimulationConfig) -> bool:
    return cfg.n_fovs * cfg.n_frames * 2 * cfg.height * cfg.width * 2 > 2**32 - 2**25
