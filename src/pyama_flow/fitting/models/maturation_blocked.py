"""``maturation_blocked`` model: translation blocked at ``t0``; existing protein matures and decays.

ODE (from ``t0``, ``dt = t - t0``; mature protein observed)::

    G_u' = -(km + beta) G_u,        G_u(t0) = Gu0
    G'   = km G_u - beta G,         G(t0)   = G0
    y    = G + offset               (y = offset for dt <= 0)

Closed form (SPEC step 6; it solves the ODE exactly since km / (c - beta) = 1
for c = beta + km)::

    G = G0 e^{-beta dt} + Gu0 (e^{-beta dt} - e^{-(beta+km) dt})

No rate difference appears in a denominator, so the model has no singular
point; ``e^{-beta dt} - e^{-c dt}`` is computed as ``-e^{-beta dt} expm1(-km dt)``.

Default ``t0 = 0`` (the lower bound: blocking at the first frame). Note that,
as the SPEC defines the model as 0 for dt <= 0, a frame at exactly ``t0``
is modelled as ``offset`` alone.

Identifiability: shifting ``t0`` only rescales the two exponentials, so
``(t0, G0, Gu0)`` fit the frames after ``t0`` equally well for any ``t0``
between two frames; data fix ``t0`` only to within a frame interval and
``J^T J`` is singular (standard errors NaN) while ``t0`` is free. Fix ``t0``
at the known time of the translation block for meaningful ``G0``/``Gu0``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from pyama_flow.fitting.models import ParamDefault, ParamInfo, broadcast_shape, onset

NAME = "maturation_blocked"
PARAMS = ("t0", "G0", "Gu0", "km", "beta", "offset")
DEFAULTS = {
    "t0": ParamDefault(0.0, 0.0, 1.0),
    "G0": ParamDefault(100.0, 0.0, 1e6),
    "Gu0": ParamDefault(100.0, 0.0, 1e6),
    "km": ParamDefault(1.28, 1e-5, 30.0, True),
    "beta": ParamDefault(5.22e-3, 1e-5, 10.0, True),
    "offset": ParamDefault(0.0, -1e6, 1e6),
}
#: unit and meaning of every parameter (report, viewer, config/README.md)
INFO = {
    "t0": ParamInfo("h", "time of the translation block (after the first frame)"),
    "G0": ParamInfo("a.u.", "mature protein present when translation is blocked (at t0)"),
    "Gu0": ParamInfo("a.u.", "immature protein present when translation is blocked (at t0)"),
    "km": ParamInfo("1/h", "maturation rate of the fluorescent protein (maturation half-time = ln 2 / km)"),
    "beta": ParamInfo("1/h", "protein degradation rate (protein half-life = ln 2 / beta)"),
    "offset": ParamInfo("a.u.", "baseline intensity before the onset"),
}
LINEAR = ("G0", "Gu0", "offset")


def _parts(t: np.ndarray, params: Mapping[str, object]):
    dt, on = onset(t, params["t0"])
    km = np.asarray(params["km"], dtype=np.float64)
    beta = np.asarray(params["beta"], dtype=np.float64)
    eb = np.where(on, np.exp(-beta * dt), 0.0)  # mature part, 0 before t0
    rise = -eb * np.expm1(-km * dt)  # e^{-beta dt} - e^{-c dt}
    return dt, on, km, beta, eb, rise


def evaluate(t: np.ndarray, params: Mapping[str, object]) -> np.ndarray:
    """Model output at times ``t`` (hours); parameters broadcast with ``t``."""
    t = np.asarray(t, dtype=np.float64)
    _, _, _, _, eb, rise = _parts(t, params)
    y = (
        np.asarray(params["G0"], dtype=np.float64) * eb
        + np.asarray(params["Gu0"], dtype=np.float64) * rise
        + np.asarray(params["offset"], dtype=np.float64)
    )
    return np.broadcast_to(y, broadcast_shape(t, params, PARAMS)).copy()


def jacobian(t: np.ndarray, params: Mapping[str, object], names: Sequence[str]) -> np.ndarray:
    """Analytic derivatives of :func:`evaluate`, shape ``(*shape, len(names))``.

    For dt > 0 (all derivatives but ``offset`` are 0 before ``t0``)::

        d/dt0   = beta G - Gu0 km e^{-c dt}      (= -dG/d(dt))
        d/dG0   = e^{-beta dt}
        d/dGu0  = e^{-beta dt} - e^{-c dt}
        d/dkm   = Gu0 dt e^{-c dt}
        d/dbeta = -dt G
    """
    t = np.asarray(t, dtype=np.float64)
    shape = broadcast_shape(t, params, PARAMS)
    dt, on, km, beta, eb, rise = _parts(t, params)
    g0 = np.asarray(params["G0"], dtype=np.float64)
    gu0 = np.asarray(params["Gu0"], dtype=np.float64)
    ec = eb - rise  # e^{-c dt} (0 before t0)
    mature = g0 * eb + gu0 * rise
    cols = []
    for name in names:
        if name == "t0":
            col = beta * mature - gu0 * km * ec
        elif name == "G0":
            col = eb
        elif name == "Gu0":
            col = rise
        elif name == "km":
            col = gu0 * dt * ec
        elif name == "beta":
            col = -dt * mature
        elif name == "offset":
            col = np.ones(())
        else:
            raise ValueError(f"model {NAME!r} has no parameter {name!r}")
        cols.append(np.broadcast_to(col, shape))
    if not cols:
        return np.zeros(shape + (0,))
    return np.stack(cols, axis=-1)


def evaluate_jacobian(t: np.ndarray, params: Mapping[str, object], names: Sequence[str]):
    """``(evaluate(t, params), jacobian(t, params, names))``."""
    return evaluate(t, params), jacobian(t, params, names)
