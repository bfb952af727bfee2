"""Cells followed over time (the workflow's ``track`` step).

- :mod:`~pyama_flow.tracking.objects`: a frame's objects (areas, centroids,
  raster order) and their overlaps with the previous frame;
- :mod:`~pyama_flow.tracking.assign`: minimum-cost assignment on sparse
  candidate pairs (scipy's ``linear_sum_assignment`` per block);
- :mod:`~pyama_flow.tracking.divisions`: supported divisions, second-chance
  divisions, divisions revoked as over-segmentation;
- :mod:`~pyama_flow.tracking.merges`: cells merged by the segmentation split
  along their previous masks;
- :mod:`~pyama_flow.tracking.gaps`: gap closing (tracks missing for a few
  frames continued by overlap or distance);
- :mod:`~pyama_flow.tracking.lineage`: track ids, parents, first and last
  frames; lineage tables (CSV, parent, lineage root, generation);
- :mod:`~pyama_flow.tracking.tracker`: the streaming :class:`Tracker` that
  drives them frame by frame;
- :mod:`~pyama_flow.tracking.reference`: the old PyAMA tracker, for
  comparison only;
- :mod:`~pyama_flow.tracking.step`: the step over one FOV.

Rule: ``workflow/rules/track.smk``.
"""
