"""``pyama-flow view RESULTS_DIR``: browse results, inspect cells, mark them good or bad."""

from __future__ import annotations

import argparse
import logging
import sys

EPILOG = """\
The server binds to 127.0.0.1 (this machine only) unless --host is given.
Each start makes an access token (as Jupyter does): open the printed URL,
which ends in ?token=...; the first page load sets a cookie, and any
request without the token is refused (403). Other users of a shared login
node can reach 127.0.0.1 too: --no-token disables this check.
Results on a cluster: start the viewer there and tunnel the port from your
laptop, then open http://127.0.0.1:8765 locally:

  cluster$ pyama-flow view results/ --port 8765
  laptop$  ssh -L 8765:127.0.0.1:8765 cluster      # then browse http://127.0.0.1:8765

(add -N to only forward; to reach a compute node: ssh -L 8765:127.0.0.1:8765
-J login node). Prefer the tunnel over --host 0.0.0.0, which lets anyone who
can reach the machine read the results and mark cells.

Page: click a cell to select it; g / b mark it good / bad, n / p next /
previous cell, left / right arrows step frames. Marks are decisions appended
to the FOV's curation.csv (beside traces.csv, safe across several viewers);
they are applied to the current traces.csv wherever traces are read, and the
next `snakemake` run refits only those FOVs (check with `snakemake -n`).
A PyAMA traces_inspected.csv is imported into curation.csv on first read;
`pyama-flow curation export` writes one back.
Only files under RESULTS_DIR are served. Z is already resolved in the
results (extract stored one plane or the max projection), so frames are
shown as stored.
"""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "view",
        help="web viewer of a results folder: frames, outlines, traces, fits; mark cells good/bad",
        description=(
            "Serve a results folder to the browser: datasets, FOVs and samples, any "
            "frame with percentile contrast, outlines and track ids, each cell's trace "
            "with its fitted curve and parameters, and good/bad curation recorded as "
            "decisions in curation.csv."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("results_dir", metavar="RESULTS_DIR",
                        help="the workflow's results/ folder (or the folder containing it)")
    parser.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 = any free port)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default 127.0.0.1: this machine only; use an SSH tunnel)")
    parser.add_argument("--cache-mb", type=int, default=64,
                        help="memory for rendered frames, MB (LRU; default 64)")
    parser.add_argument("--no-token", action="store_true",
                        help="serve without the access token (anyone who can reach the port, "
                             "e.g. other users of a login node, can read and mark)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every request")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    import secrets

    from pyama_flow.viewer import make_viewer_server
    from pyama_flow.viewer.server import is_loopback

    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    try:
        token = None if args.no_token else secrets.token_urlsafe(24)
        server = make_viewer_server(args.results_dir, args.host, args.port, args.cache_mb, token=token)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    host, port = server.server_address[:2]
    url_host = f"[{host}]" if ":" in str(host) else host
    print(f"pyama-flow viewer: {server.get_app().results.root}", file=sys.stderr)
    query = f"?token={token}" if token else ""
    print(f"serving on http://{url_host}:{port}/{query}  (Ctrl-C to stop)", file=sys.stderr)
    if token is None:
        print("warning: --no-token: anyone who can connect to the port can read and mark", file=sys.stderr)
    if not is_loopback(args.host):
        print(f"warning: bound to {args.host}: reachable from other machines; anyone who can "
              "connect can read these results and mark cells", file=sys.stderr)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
