"""Cells followed over time (the workflow's ``track`` step).

- :mod:`~pyama_flow.tracking.tracker`: frame objects, overlap assignment, merges
  split along the previous cells, supported divisions, lineage;
- :mod:`~pyama_flow.tracking.step`: the step over one FOV.

Rule: ``workflow/rules/track.smk``.
"""
