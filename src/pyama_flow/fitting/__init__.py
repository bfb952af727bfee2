"""Kinetic models fitted to each cell's trace (the workflow's ``fit`` step).

- :mod:`~pyama_flow.fitting.models`: the models (closed forms, parameters,
  units, bounds);
- :mod:`~pyama_flow.fitting.fit`: the batched least-squares fitter, fit status
  and reliability, the per-FOV driver.

Rule: ``workflow/rules/fit.smk``.
"""
