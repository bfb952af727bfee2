"""Results viewer: a small local web app over a results folder (``pyama-flow view``).

Browse datasets, FOVs and samples; look at any frame of any channel with
percentile contrast, cell outlines and track ids; click a cell to see its
trace with the fitted curve and parameters; mark it good or bad, which edits
the FOV's decisions log ``curation.csv`` so the next ``snakemake`` run refits only
what changed.

- :mod:`.results`: the results folder, safe paths (nothing outside it is served);
- :mod:`.render`: frames to PNG (one TIFF page read), cell lookup, statistics;
- :mod:`.data`: traces, fits, fitted curves, curation;
- :mod:`.app`: the WSGI application (routes and JSON/PNG responses);
- :mod:`.server`: the threaded standard-library server.

Only the standard library, numpy, pandas, Pillow and tifffile are used; the
page is plain HTML, CSS and JavaScript served by the app (no CDN, no build).
"""

from pyama_flow.viewer.app import ViewerApp
from pyama_flow.viewer.server import make_viewer_server

__all__ = ["ViewerApp", "make_viewer_server"]
