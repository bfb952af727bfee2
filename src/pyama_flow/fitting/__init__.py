"""Kinetic models fitted to each cell's trace (the workflow's ``fit`` step).

One module per concern, from the table down to the numerics:

- :mod:`~pyama_flow.fitting.fit`: the per-FOV driver :func:`fit_traces`
  (cells in batches, worker processes), the fit tables and their CSV,
  model choice by AIC, failure reasons;
- :mod:`~pyama_flow.fitting.batch`: :func:`fit_batch`, many cells fitted
  at once (the algorithm and the per-cell outputs are described there);
- :mod:`~pyama_flow.fitting.params`: parameter specs, the user's overrides
  (:func:`resolve_params`);
- :mod:`~pyama_flow.fitting.starts`: the data-driven grid starts, and the
  upper bound of ``t0`` read off the data (``fit.t0_bounds: data``);
- :mod:`~pyama_flow.fitting.solver`: the batched, projected
  Levenberg-Marquardt solver;
- :mod:`~pyama_flow.fitting.restarts`: restarts off singular directions and
  across the onset's sample intervals;
- :mod:`~pyama_flow.fitting.weighting`: ``fit.weighting: poisson``;
- :mod:`~pyama_flow.fitting.status`: standard errors, parameters at a
  bound, the fit status (:data:`STATUSES`), the Cramér-Rao bound;
- :mod:`~pyama_flow.fitting.linalg`: small stacked linear systems;
- :mod:`~pyama_flow.fitting.models`: the models (closed forms, parameters,
  units, bounds).

Rule: ``workflow/rules/fit.smk``.
"""
