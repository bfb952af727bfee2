"""Pictures, tables and the sample analysis of the Snakemake report.

Shared by the pictures (and the viewer):

- :mod:`~pyama_flow.report.display`: frames for display with numpy alone
  (first/middle/last frame, contrast stretch, thumbnails, outlines, colours);
- :mod:`~pyama_flow.report.figures`: matplotlib plumbing (figure with a
  title strip, scale bar, time axis, saving PNGs).

One module per QC picture of a FOV, each with its ``plot_*`` (data in,
figure out) and its ``render_*`` (files in, files out; what the rule's script
in ``scripts/`` calls):

- :mod:`~pyama_flow.report.frames`: raw frames (``qc_frames``);
- :mod:`~pyama_flow.report.statistics`: per-frame statistics, plot and
  HTML table (``qc_frame_stats``);
- :mod:`~pyama_flow.report.outlines`: cell outlines and track ids (``qc_outlines``);
- :mod:`~pyama_flow.report.background`: raw beside background (``qc_background``);
- :mod:`~pyama_flow.report.cells`: cells, tracks and filters (``qc_cells``);
- :mod:`~pyama_flow.report.config_page`: the parameters used (``qc_config``).

Then the samples and the whole run:

- :mod:`~pyama_flow.report.analysis`: per-sample parameter tables, trace
  summaries and their figures (``qc_sample``, and ``analysis`` in ``fit.smk``);
- :mod:`~pyama_flow.report.overview`: every FOV and sample on one page (``qc_overview``);
- :mod:`~pyama_flow.report.deep_links`: URLs into the Snakemake report's pages.

Rules: ``workflow/rules/qc.smk`` (and ``analysis`` in ``workflow/rules/fit.smk``).
"""
