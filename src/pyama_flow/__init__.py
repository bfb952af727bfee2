"""pyama-flow: PyAMA's single-cell time-lapse pipeline as a testable library.

Modules: ``io`` (readers, result stacks), ``simulate`` (synthetic experiments
with ground truth), ``segmentation``, ``background``, ``tracking``, ``traces``,
``models`` and ``fitting``, ``merge``, ``metrics``. Nothing here imports
Snakemake; the workflow's scripts call these functions.
"""

__version__ = "0.1.0"
