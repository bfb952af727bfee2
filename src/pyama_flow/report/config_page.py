"""The report's "parameters used" page (rule ``qc_config``): the effective config as HTML."""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from typing import Any

from pyama_flow.io.atomic import write_text


def config_html(config: Mapping[str, Any], title: str = "Parameters used") -> str:
    """The effective config (after the schema's defaults) as an HTML table per section."""

    def flatten(value: Any, prefix: str) -> list[tuple[str, str]]:
        if isinstance(value, Mapping) and value:
            out: list[tuple[str, str]] = []
            for k in value:
                out += flatten(value[k], f"{prefix}.{k}" if prefix else str(k))
            return out
        if isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
            out = []
            for i, v in enumerate(value):
                out += flatten(v, f"{prefix}[{i}]")
            return out
        return [(prefix, json.dumps(value, ensure_ascii=False, default=str))]

    sections = []
    for section in config:
        rows = "".join(
            f"<tr><td class='k'>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>"
            for k, v in flatten(config[section], "")
        ) or "<tr><td class='k'></td><td>{}</td></tr>"
        sections.append(f"<h2>{html.escape(str(section))}</h2><table>{rows}</table>")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; font-size: 13px; margin: 12px; color: #222; background: #fff; }}
h1 {{ font-size: 16px; margin: 0 0 6px 0; }}
h2 {{ font-size: 14px; margin: 14px 0 4px 0; }}
table {{ border-collapse: collapse; }}
td {{ padding: 2px 10px; border-bottom: 1px solid #e4e4e4; font-family: ui-monospace, monospace; }}
td.k {{ color: #555; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p>The configuration this run used, with the schema's defaults filled in
(see config/README.md for every key).</p>
{chr(10).join(sections)}
</body></html>
"""


def render_config(config: Mapping[str, Any], out_path: str) -> None:
    """The effective config as an HTML page (see :func:`config_html`)."""
    write_text(out_path, config_html(config))
