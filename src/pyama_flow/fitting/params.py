"""Parameter configuration of a fit: the model's defaults with the user's overrides.

:func:`resolve_params` turns ``fit.params`` (bounds, start values, fixed
parameters) into one :class:`ParamSpec` per model parameter; the fitter
works on the free ones.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType

import numpy as np

from pyama_flow.fitting.models import get_model

_OVERRIDE_KEYS = ("value", "lb", "ub", "fixed")


@dataclass(frozen=True)
class ParamSpec:
    """Resolved configuration of one parameter."""

    name: str
    value: float
    lb: float
    ub: float
    fixed: bool


def _model_name(model: ModuleType) -> str:
    return str(getattr(model, "NAME", getattr(model, "__name__", "model")))


def resolve_params(model: str | ModuleType, overrides: Mapping[str, object] | None = None) -> tuple[ParamSpec, ...]:
    """The model's parameters in ``PARAMS`` order with user overrides applied.

    Parameters
    ----------
    model : str or module
        Registered model name (or a model module).
    overrides : mapping, optional
        ``{param: {"value": v, "lb": lo, "ub": hi, "fixed": bool}}``; every
        key is optional. A bare number means ``{"value": number}``.

    Returns
    -------
    tuple of ParamSpec

    Raises
    ------
    ValueError
        Unknown parameter or key, non-numeric or non-finite value, ``lb > ub``
        or value outside ``[lb, ub]``; one line naming model and parameter.
    """
    mod = get_model(model)
    name = _model_name(mod)
    overrides = dict(overrides or {})
    unknown = [p for p in overrides if p not in mod.PARAMS]
    if unknown:
        raise ValueError(f"model {name!r}: unknown parameter {unknown[0]!r} (parameters: {', '.join(mod.PARAMS)})")
    out = []
    for p in mod.PARAMS:
        d = mod.DEFAULTS[p]
        cfg = overrides.get(p, {})
        if cfg is None:
            cfg = {}
        if not isinstance(cfg, Mapping):
            cfg = {"value": cfg}
        bad = [k for k in cfg if k not in _OVERRIDE_KEYS]
        if bad:
            raise ValueError(
                f"model {name!r}, parameter {p!r}: unknown key {bad[0]!r} (use {', '.join(_OVERRIDE_KEYS)})"
            )
        try:
            value = float(cfg.get("value", d.value))
            lb = float(cfg.get("lb", d.lb))
            ub = float(cfg.get("ub", d.ub))
        except (TypeError, ValueError):
            raise ValueError(f"model {name!r}, parameter {p!r}: value and bounds must be numbers") from None
        fixed = cfg.get("fixed", d.fixed)
        if not isinstance(fixed, (bool, np.bool_)):
            raise ValueError(f"model {name!r}, parameter {p!r}: 'fixed' must be true or false")
        if not np.isfinite(value) or np.isnan(lb) or np.isnan(ub):
            raise ValueError(f"model {name!r}, parameter {p!r}: value must be finite and bounds not NaN")
        if lb > ub:
            raise ValueError(f"model {name!r}, parameter {p!r}: lower bound {lb:g} > upper bound {ub:g}")
        if not lb <= value <= ub:
            raise ValueError(f"model {name!r}, parameter {p!r}: value {value:g} outside bounds [{lb:g}, {ub:g}]")
        out.append(ParamSpec(p, value, lb, ub, bool(fixed)))
    return tuple(out)


def _check_spec(model: ModuleType, spec: Sequence[ParamSpec] | Mapping | None) -> tuple[ParamSpec, ...]:
    if spec is None:
        return resolve_params(model)
    if isinstance(spec, Mapping):
        return resolve_params(model, spec)
    spec = tuple(spec)
    if tuple(s.name for s in spec) != tuple(model.PARAMS):
        raise ValueError(f"model {_model_name(model)!r}: spec does not match PARAMS {model.PARAMS}")
    return spec


def _params(spec: Sequence[ParamSpec], free: Sequence[str], P: np.ndarray) -> dict[str, object]:
    """Parameter dict with the free ones as ``(m, 1)`` columns of ``P``."""
    d: dict[str, object] = {s.name: s.value for s in spec}
    for j, name in enumerate(free):
        d[name] = P[:, j : j + 1]
    return d


__all__ = ["ParamSpec", "resolve_params"]
