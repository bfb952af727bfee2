"""Pictures, tables and the sample analysis of the Snakemake report.

- :mod:`~pyama_flow.report.qc`: per-FOV QC figures (frames, outlines,
  background, frame statistics, cells) and the config page;
- :mod:`~pyama_flow.report.analysis`: per-sample parameter tables, trace
  summaries and their figures (the ``analysis`` step);
- :mod:`~pyama_flow.report.overview`: every FOV and sample on one page.

Rules: ``workflow/rules/qc.smk`` (and ``analysis`` in ``merge.smk``).
"""
