"""Per-cell intensity over time (the workflow's ``traces``, ``merge`` and ``tidy`` steps).

- :mod:`~pyama_flow.traces.features`: per-frame features of every cell, the
  grown measuring masks, the reference's filters;
- :mod:`~pyama_flow.traces.step`: the step over one FOV;
- :mod:`~pyama_flow.traces.curation`: the viewer's decisions, applied wherever
  traces are read;
- :mod:`~pyama_flow.traces.merge`: FOVs into sample tables and ``all_traces.csv``.

Rules: ``workflow/rules/traces.smk``, ``workflow/rules/merge.smk``.
"""
