"""Background of the fluorescence channels (the workflow's ``correct`` step).

- :mod:`~pyama_flow.background.model`: tile medians outside the cells and the
  bicubic spline through them (PyAMA's background model);
- :mod:`~pyama_flow.background.step`: the step over one FOV channel.

Rule: ``workflow/rules/correct.smk``.
"""
