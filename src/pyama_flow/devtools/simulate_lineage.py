"""Label-only simulator of moving, dividing nuclei with a true lineage.

Used to score the tracker (SPEC step 4 and Metrics) when the true masks are
given. The simulation has four things a tracker must handle:

- **divisions**: a mother ends at frame t, two daughters (each about half the
  mother's area, placed on both sides of her centre along a random axis)
  start at t + 1 with ``parent`` = mother;
- **births**: cells entering the field through the border (where there is
  free space) start a new track with ``parent`` = 0, as do the cells of
  frame 0;
- **one-frame dropouts**: a cell is missing from one frame (a segmentation
  miss: its pixels are background, its neighbours unchanged) but keeps its
  identity before and after; dropouts never hit a cell's first or last
  frame, nor two frames in a row, so the lineage's first/last frames stay
  exact;
- **touching neighbours**: a fraction of the cells move in pairs held at
  contact distance (and daughters start touching); overlapping ellipses are
  split by the nearest normalised ellipse distance, giving a shared border.

A cell is visible while its centre lies inside the field; once its centre
leaves the field the cell is gone for good (its track ends).

The cell states (a few floats per cell and frame) are simulated up front;
frames are rendered on demand by :class:`SimulatedFrames`, so a long 1024²
simulation does not hold all its label images in memory.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
import numpy as np
import pandas as pd

_STATE_COLUMNS = ("cell", "y", "x", "a", "b", "theta", "visible")


class SimulatedFrames(Sequence):
    """Lazy sequence of the simulated label images (uint16, pixel = true cell id).

    Indexing renders the frame from the stored cell states; iterating renders
    one frame at a time.
    """

    def __init__(self, states: list[np.ndarray], shape: tuple[int, int]):
        self._states = states
        self.shape = (int(shape[0]), int(shape[1]))

    def __len__(self) -> int:
        return len(self._states)

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return render_labels(self._states[index], self.shape)

    def __iter__(self) -> Iterator[np.ndarray]:
        for state in self._states:
            yield render_labels(state, self.shape)

    def states(self, index: int) -> pd.DataFrame:
        """Cell states of one frame (cell, y, x, a, b, theta, visible)."""
        return pd.DataFrame(self._states[index], columns=list(_STATE_COLUMNS)).astype(
            {"cell": np.int64, "visible": bool}
        )


def render_labels(state: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Draw the visible cells of one frame as a uint16 label image.

    Parameters
    ----------
    state : (N, 7) float64 array
        Rows ``cell, y, x, a, b, theta, visible`` (``a``, ``b`` semi-axes,
        ``theta`` the angle of ``a`` to the x axis).
    shape : (Y, X)

    Returns
    -------
    (Y, X) uint16 label image. A pixel covered by several ellipses goes to the
    cell with the smallest normalised ellipse distance, so touching cells get
    a clean shared border. A cell with ``visible`` = 0 (a dropout) keeps its
    territory but is drawn as background, so its neighbours look as usual.
    """
    h, w = int(shape[0]), int(shape[1])
    labels = np.zeros((h, w), dtype=np.uint16)
    best = np.full((h, w), np.inf, dtype=np.float32)
    for cell, y, x, a, b, theta, visible in state:
        reach = int(np.ceil(max(a, b))) + 1
        y0, y1 = max(int(np.floor(y)) - reach, 0), min(int(np.ceil(y)) + reach + 1, h)
        x0, x1 = max(int(np.floor(x)) - reach, 0), min(int(np.ceil(x)) + reach + 1, w)
        if y0 >= y1 or x0 >= x1:
            continue
        yy = np.arange(y0, y1, dtype=np.float32)[:, None] - np.float32(y)
        xx = np.arange(x0, x1, dtype=np.float32)[None, :] - np.float32(x)
        c, s = np.float32(np.cos(theta)), np.float32(np.sin(theta))
        u = (xx * c + yy * s) / np.float32(a)
        v = (-xx * s + yy * c) / np.float32(b)
        d = u * u + v * v
        win_best = best[y0:y1, x0:x1]
        take = (d < 1.0) & (d < win_best)
        win_best[take] = d[take]
        labels[y0:y1, x0:x1][take] = np.uint16(cell if visible else 0)
    return labels


def render_phase(labels: np.ndarray, seed: int | tuple[int, ...] = 0, border_line: float = 0.0) -> np.ndarray:
    """A phase-contrast-like image (uint16) of a label image, for segmenting.

    The demo simulator's look (:func:`pyama_flow.devtools.simulate.phase_contrast`
    with :class:`~pyama_flow.devtools.simulate.SimulationConfig`'s defaults):
    flat noisy background (1000 +- 4), dark textured cell bodies (880 +- 70)
    and a bright halo (+180) in a 3 px ring outside the cells. Touching cells
    share no halo, so a segmentation may merge them: the hard case for
    tracking.

    Parameters
    ----------
    labels : (Y, X) integer label image (0 = background)
    seed : seed of the texture and noise (e.g. ``(movie_seed, frame)``)
    border_line : brightness added on the pixels where two cells touch
        (0 = none; the halo's 180 would make every contact visible)

    Returns
    -------
    (Y, X) uint16 image.
    """
    from scipy import ndimage as ndi

    from pyama_flow.devtools.simulate import SimulationConfig, phase_contrast, to_uint16

    labels = np.asarray(labels)
    pc = phase_contrast(labels, np.random.default_rng(seed), SimulationConfig())
    if border_line:
        cell = labels > 0
        lo = ndi.grey_erosion(np.where(cell, labels, np.iinfo(labels.dtype).max), size=3)
        hi = ndi.grey_dilation(labels, size=3)
        contact = cell & ((lo < labels) | (hi > labels))
        pc[contact] += border_line
    return to_uint16(pc)


# long only by its docstring (13 parameters); the steps are _Colony's methods
def simulate_lineage(
    n_frames: int = 40,
    shape: tuple[int, int] = (512, 512),
    n_cells: int = 40,
    radius: tuple[float, float] = (9.0, 13.0),
    speed: float = 2.0,
    persistence: float = 0.7,
    division_prob: float = 0.01,
    min_cycle: int = 8,
    birth_rate: float = 0.3,
    dropout_prob: float = 0.01,
    pair_fraction: float = 0.3,
    seed: int = 0,
    division_asymmetry: float = 0.1,
) -> tuple[SimulatedFrames, pd.DataFrame]:
    """Simulate moving nuclei with divisions, births, dropouts and touching pairs.

    Parameters
    ----------
    n_frames : int
        Number of frames.
    shape : (Y, X)
        Frame shape in pixels.
    n_cells : int
        Cells in frame 0.
    radius : (low, high)
        Range of the cells' adult radius in px (uniform); nuclei are ellipses
        with aspect up to ~1.5 and this geometric-mean radius.
    speed : float
        Typical displacement per frame in px (persistent random walk).
    persistence : float
        Velocity memory in [0, 1) of the random walk.
    division_prob : float
        Per-frame probability that a cell at least ``min_cycle`` frames old
        divides.
    min_cycle : int
        Minimum age in frames before a cell can divide.
    birth_rate : float
        Expected number of cells entering through the border per frame
        (Poisson).
    dropout_prob : float
        Per-cell, per-frame probability of a one-frame segmentation dropout
        (never on a cell's first or last frame).
    pair_fraction : float
        Fraction of the initial and entering cells that move as a touching
        pair with a neighbour.
    seed : int
        Seed of the random generator; same parameters and seed give the
        same output.
    division_asymmetry : float
        Daughter areas are (1 + a) / 2 and (1 - a) / 2 of the mother's with a
        uniform in [-division_asymmetry, division_asymmetry] (0.1: nearly
        symmetric; 0.4: one daughter up to 2.3x the other). The random
        draws are the same for every value, so the default reproduces the
        simulations made before this parameter existed.

    Returns
    -------
    frames : SimulatedFrames
        Lazy sequence of ``n_frames`` uint16 label images whose pixel values
        are the true cell ids.
    lineage : DataFrame
        Columns ``cell, parent, first_frame, last_frame`` (CTC man_track
        semantics, ``parent`` 0 = none), sorted by cell. Dropout frames lie
        inside ``first_frame .. last_frame``.
    """
    rng = np.random.default_rng(seed)
    h, w = int(shape[0]), int(shape[1])
    colony = _Colony(rng, (h, w), (float(radius[0]), float(radius[1])), speed, pair_fraction)
    colony.spawn(n_cells, 0, at_border=False)
    # random initial ages so divisions are spread over time
    colony.cols["age"] = rng.integers(0, max(min_cycle, 1) * 2, colony.size)

    states: list[np.ndarray] = []
    for frame in range(n_frames):
        if frame > 0:
            colony.move(persistence)
            colony.remove_exits()
            colony.divide(frame, min_cycle, division_prob, division_asymmetry)
            # births through the border
            n_birth = int(rng.poisson(birth_rate))
            if n_birth:
                colony.spawn(n_birth, frame, at_border=True)
        colony.mark_present(frame)
        states.append(colony.snapshot())

    lineage = colony.lineage()
    _add_dropouts(states, lineage["first_frame"].to_numpy(), lineage["last_frame"].to_numpy(), rng, dropout_prob)
    return SimulatedFrames(states, (h, w)), lineage


class _Colony:
    """The live cells of :func:`simulate_lineage` and the record of every cell made.

    All random draws go through the one generator ``rng``, in the order the
    methods are called, so a seed gives the same simulation.

    Attributes
    ----------
    cols : dict of name -> array
        One row per live cell, sorted by cell id: ``cell, y, x, vy, vx, r``
        (current radius), ``r_adult``, ``aspect``, ``theta``, ``age`` and
        ``partner`` (the id of the touching partner, 0 = none).
    rec_parent, rec_first, rec_last : lists
        Per cell ever made (index = id - 1): parent id, first and last frame.
    """

    def __init__(self, rng: np.random.Generator, shape: tuple[int, int], radius: tuple[float, float],
                 speed: float, pair_fraction: float):
        self.rng = rng
        self.h, self.w = shape
        self.r_lo, self.r_hi = radius
        self.speed = speed
        self.pair_fraction = pair_fraction
        self.rec_parent: list[int] = []
        self.rec_first: list[int] = []
        self.rec_last: list[int] = []
        int_cols = ("cell", "age", "partner")
        self.cols: dict[str, np.ndarray] = {
            k: np.zeros(0, np.int64 if k in int_cols else np.float64)
            for k in ("cell", "y", "x", "vy", "vx", "r", "r_adult", "aspect", "theta", "age", "partner")
        }

    @property
    def size(self) -> int:
        """Number of live cells."""
        return self.cols["cell"].size

    def new_cells(self, n: int, y, x, vy, vx, r, r_adult, parent: int, frame: int) -> np.ndarray:
        """Append ``n`` cells born at ``frame`` (random aspect and angle); return their ids."""
        ids = np.arange(len(self.rec_parent) + 1, len(self.rec_parent) + 1 + n, dtype=np.int64)
        for _ in range(n):
            self.rec_parent.append(parent)
            self.rec_first.append(frame)
            self.rec_last.append(frame)
        add = {
            "cell": ids,
            "y": np.asarray(y, float),
            "x": np.asarray(x, float),
            "vy": np.asarray(vy, float),
            "vx": np.asarray(vx, float),
            "r": np.asarray(r, float),
            "r_adult": np.asarray(r_adult, float),
            "aspect": self.rng.uniform(1.0, 1.25, n),
            "theta": self.rng.uniform(0, np.pi, n),
            "age": np.zeros(n, np.int64),
            "partner": np.zeros(n, np.int64),
        }
        for k in self.cols:
            self.cols[k] = np.concatenate([self.cols[k], add[k]])
        return ids

    def _make_partners(self, ids: np.ndarray) -> None:
        """Make the two live cells ``ids`` each other's touching partner."""
        idx = np.searchsorted(self.cols["cell"], ids)
        self.cols["partner"][idx[0]], self.cols["partner"][idx[1]] = ids[1], ids[0]

    def _keep(self, keep: np.ndarray, ended) -> None:
        """Keep the rows ``keep``; cells whose partner is in ``ended`` lose it."""
        for k in self.cols:
            self.cols[k] = self.cols[k][keep]
        self.cols["partner"][np.isin(self.cols["partner"], list(ended))] = 0

    def is_free(self, ys, xs, rs) -> bool:
        """True if discs (ys, xs, rs) do not overlap any live cell."""
        cols = self.cols
        if cols["cell"].size == 0:
            return True
        for y, x, r in zip(ys, xs, rs, strict=True):
            d = np.hypot(cols["y"] - y, cols["x"] - x)
            if np.any(d < 1.05 * (cols["r_adult"] * 1.12 + r)):
                return False
        return True

    def _entry_site(self, at_border: bool) -> tuple[float, float, float, float]:
        """Random position and velocity ``(y, x, vy, vx)`` of a new cell.

        At the border: just inside one of the four sides, moving inwards;
        otherwise anywhere in the field, moving in a random direction.
        """
        rng, h, w, speed = self.rng, self.h, self.w, self.speed
        if at_border:
            side = rng.integers(4)
            t = rng.uniform(0.1, 0.9)
            inset = rng.uniform(0.5, 2.0)
            return {
                0: (inset, t * w, speed, 0.0),
                1: (h - 1 - inset, t * w, -speed, 0.0),
                2: (t * h, inset, 0.0, speed),
                3: (t * h, w - 1 - inset, 0.0, -speed),
            }[int(side)]
        y, x = rng.uniform(0, h), rng.uniform(0, w)
        ang = rng.uniform(0, 2 * np.pi)
        return y, x, speed * np.sin(ang), speed * np.cos(ang)

    def spawn(self, n: int, frame: int, at_border: bool) -> None:
        """Create n single cells or touching pairs (pair_fraction) in free space.

        Candidates that overlap a live cell are dropped; gives up after
        ``50 * n`` candidates, so fewer than ``n`` cells may be made.
        """
        rng = self.rng
        made = 0
        tries = 0
        while made < n and tries < 50 * n:
            tries += 1
            pair = made + 2 <= n and rng.random() < self.pair_fraction
            r_ad = rng.uniform(self.r_lo, self.r_hi, 2)
            r_now = r_ad * rng.uniform(0.8, 1.0, 2)
            y, x, vy, vx = self._entry_site(at_border)
            if pair:
                ang = rng.uniform(0, 2 * np.pi)
                sep = 0.95 * (r_now[0] + r_now[1]) / 2
                ys = [y + sep * np.sin(ang), y - sep * np.sin(ang)]
                xs = [x + sep * np.cos(ang), x - sep * np.cos(ang)]
                if at_border:  # keep both centres inside the field
                    ys = list(np.clip(ys, 0.5, self.h - 1.5))
                    xs = list(np.clip(xs, 0.5, self.w - 1.5))
                if not self.is_free(ys, xs, r_ad):
                    continue
                self._make_partners(self.new_cells(2, ys, xs, [vy, vy], [vx, vx], r_now, r_ad, 0, frame))
                made += 2
            else:
                if not self.is_free([y], [x], r_ad[:1]):
                    continue
                self.new_cells(1, [y], [x], [vy], [vx], r_now[:1], r_ad[:1], 0, frame)
                made += 1

    def move(self, persistence: float) -> None:
        """One frame of motion and growth: persistent random walk, relaxation, ageing.

        Partners share their walk's noise; speeds are capped at 2.5x ``speed``.
        """
        cols, rng, speed = self.cols, self.rng, self.speed
        n = self.size
        noise = rng.normal(0.0, speed * np.sqrt(1 - persistence**2), (n, 2))
        pos_of = {int(c): i for i, c in enumerate(cols["cell"])}
        for i in range(n):
            p = int(cols["partner"][i])
            if p and p in pos_of and pos_of[p] < i:
                noise[i] = noise[pos_of[p]]
        cols["vy"] = persistence * cols["vy"] + noise[:, 0]
        cols["vx"] = persistence * cols["vx"] + noise[:, 1]
        vmax = 2.5 * speed
        vnorm = np.hypot(cols["vy"], cols["vx"])
        scale = np.minimum(1.0, vmax / np.maximum(vnorm, 1e-9))
        cols["vy"] *= scale
        cols["vx"] *= scale
        cols["y"] = cols["y"] + cols["vy"]
        cols["x"] = cols["x"] + cols["vx"]
        _relax(cols, pos_of)
        cols["theta"] = cols["theta"] + rng.normal(0, 0.05, n)
        cols["r"] = np.minimum(cols["r"] * 1.02, cols["r_adult"])
        cols["age"] = cols["age"] + 1

    def remove_exits(self) -> None:
        """End the cells whose centre left the field."""
        cols = self.cols
        inside = (cols["y"] >= 0) & (cols["y"] <= self.h - 1) & (cols["x"] >= 0) & (cols["x"] <= self.w - 1)
        if not inside.all():
            self._keep(inside, set(cols["cell"][~inside].tolist()))

    def divide(self, frame: int, min_cycle: int, prob: float, asymmetry: float) -> None:
        """Divide cells at least ``min_cycle`` old with probability ``prob``.

        Decided on the moved mothers: they end, and their daughters appear at
        ``frame``.
        """
        can = (self.cols["age"] >= min_cycle) & (self.rng.random(self.size) < prob)
        if not can.any():
            return
        mothers = np.flatnonzero(can)
        keep = np.ones(self.size, bool)
        keep[mothers] = False
        snap = {k: self.cols[k][mothers].copy() for k in self.cols}
        self._keep(keep, set(snap["cell"].tolist()))
        for j in range(mothers.size):
            self._add_daughters({k: v[j] for k, v in snap.items()}, frame, asymmetry)

    def _add_daughters(self, mother: dict[str, float], frame: int, asymmetry: float) -> None:
        """Two touching daughters on both sides of ``mother``'s centre, pushed apart.

        Their areas are (1 + a) / 2 and (1 - a) / 2 of the mother's, a uniform
        in [-asymmetry, asymmetry].
        """
        ang = self.rng.uniform(0, 2 * np.pi)
        off = 0.55 * mother["r"]
        asym = self.rng.uniform(-asymmetry, asymmetry)
        r_d = mother["r"] * np.sqrt(0.5 * np.array([1 + asym, 1 - asym]))
        side_y = np.array([np.sin(ang), -np.sin(ang)])
        side_x = np.array([np.cos(ang), -np.cos(ang)])
        ys = np.clip(mother["y"] + off * side_y, 0.0, self.h - 1.0)
        xs = np.clip(mother["x"] + off * side_x, 0.0, self.w - 1.0)
        push = 0.3 * self.speed
        vy = mother["vy"] * 0.5 + push * side_y
        vx = mother["vx"] * 0.5 + push * side_x
        ids = self.new_cells(2, ys, xs, vy, vx, r_d, np.full(2, mother["r_adult"]), int(mother["cell"]), frame)
        self._make_partners(ids)

    def mark_present(self, frame: int) -> None:
        """Record ``frame`` as the last frame (so far) of every live cell."""
        for c in self.cols["cell"]:
            self.rec_last[int(c) - 1] = frame

    def lineage(self) -> pd.DataFrame:
        """Table ``cell, parent, first_frame, last_frame`` of every cell made."""
        lineage = pd.DataFrame(
            {
                "cell": np.arange(1, len(self.rec_parent) + 1, dtype=np.int64),
                "parent": np.asarray(self.rec_parent, np.int64),
                "first_frame": np.asarray(self.rec_first, np.int64),
                "last_frame": np.asarray(self.rec_last, np.int64),
            }
        )
        if len(self.rec_parent) > np.iinfo(np.uint16).max:
            raise ValueError("more than 65535 cells: ids do not fit uint16 label images")
        return lineage

    def snapshot(self) -> np.ndarray:
        """The live cells' states, rows ``cell, y, x, a, b, theta, visible``."""
        cols = self.cols
        a = cols["r"] * np.sqrt(cols["aspect"])
        b = cols["r"] / np.sqrt(cols["aspect"])
        return np.column_stack(
            [cols["cell"].astype(float), cols["y"], cols["x"], a, b, cols["theta"], np.ones(cols["cell"].size)]
        )


def _add_dropouts(states: list[np.ndarray], first: np.ndarray, last: np.ndarray,
                  rng: np.random.Generator, prob: float) -> None:
    """Make cells invisible for one frame (in place, ``visible`` = 0).

    Each cell and frame drops out with probability ``prob``, never on a
    cell's first or last frame (``first``, ``last`` indexed by id - 1), and
    never twice in a row (the second of two consecutive dropouts is undone).
    """
    for t, st in enumerate(states):
        ids = st[:, 0].astype(np.int64)
        interior = (first[ids - 1] < t) & (last[ids - 1] > t)
        drop = interior & (rng.random(ids.size) < prob)
        st[drop, 6] = 0.0
    for t in range(1, len(states)):
        prev_drop = set(states[t - 1][states[t - 1][:, 6] == 0, 0].astype(np.int64).tolist())
        cur = states[t]
        both = (cur[:, 6] == 0) & np.isin(cur[:, 0].astype(np.int64), list(prev_drop))
        cur[both, 6] = 1.0


def _relax(cols: dict[str, np.ndarray], pos_of: dict[int, int]) -> None:
    """Push overlapping cells apart and pull touching partners to contact."""
    y, x, r = cols["y"], cols["x"], cols["r"]
    n = y.size
    if n < 2:
        return
    dy = y[:, None] - y[None, :]
    dx = x[:, None] - x[None, :]
    d = np.hypot(dy, dx)
    np.fill_diagonal(d, np.inf)
    contact = 0.92 * (r[:, None] + r[None, :])
    over = np.clip(contact - d, 0.0, None)
    # partners: spring toward contact distance (attraction when apart)
    partner_idx = np.array([pos_of.get(int(p), -1) if p else -1 for p in cols["partner"]], np.int64)
    has = partner_idx >= 0
    if has.any():
        i = np.flatnonzero(has)
        j = partner_idx[i]
        gap = d[i, j] - contact[i, j]
        over[i, j] = np.where(gap > 0, -0.5 * gap, over[i, j])
    unit = 1.0 / np.where(np.isfinite(d), np.maximum(d, 1e-6), np.inf)
    push = np.clip(0.25 * over, -2.0, 2.0) * unit
    cols["y"] = y + (push * dy).sum(axis=1)
    cols["x"] = x + (push * dx).sum(axis=1)
