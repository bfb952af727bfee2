"""Developer tools, apart from the science: simulators, benchmarks, accuracy metrics.

- :mod:`~pyama_flow.devtools.simulate`: the demo's simulated experiment;
- :mod:`~pyama_flow.devtools.simulate_lineage`: growing, dividing colonies for
  tracking and segmentation benchmarks;
- :mod:`~pyama_flow.devtools.bench`: ``pyama-flow bench``;
- :mod:`~pyama_flow.devtools.metrics`, :mod:`~pyama_flow.devtools.tracking_metrics`:
  segmentation and tracking scores against ground truth.
"""
