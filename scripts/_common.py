"""Shared by the rule scripts: make the library importable in any environment
(the repository's ``src/`` comes first on ``sys.path``), send logging to the
rule's log file, and turn bad input into a one-line error."""

from __future__ import annotations

import logging
import sys
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def run(main, snakemake) -> None:
    """Call ``main(snakemake)`` with logging to ``snakemake.log[0]``.

    Bad input (``InputError`` / ``ValueError``) ends the job with one line on
    stderr naming the rule's wildcards (the traceback goes to the log file
    only); anything else keeps its traceback on stderr and in the log.
    """
    from pyama_flow.io.base import InputError

    log_file = snakemake.log[0] if len(snakemake.log) else None
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.INFO)
    handlers: list[logging.Handler] = [console]
    if log_file:  # the rule's log keeps the details (debug lines, tracebacks)
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, mode="w"))
    logging.basicConfig(
        level=logging.DEBUG,
        format="%(asctime)s %(levelname)s %(message)s",
        handlers=handlers,
        force=True,
    )
    for noisy in ("matplotlib", "PIL", "tifffile", "numexpr"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    where = ", ".join(f"{k}={v}" for k, v in snakemake.wildcards.items())
    log = logging.getLogger("pyama_flow")
    try:
        main(snakemake)
    except (InputError, ValueError) as exc:
        log.error("%s%s", f"[{where}] " if where else "", exc)
        log.debug(traceback.format_exc())
        sys.exit(1)
