"""The viewer's web application: a WSGI callable with a small JSON/PNG API.

Endpoints (all ``GET`` unless noted; ``{fov}`` is the FOV index)::

    /                                        the single page (static/index.html)
    /static/{name}                           its script and style sheet
    /files/{path}                            any file under the results folder (QC pictures, ...)
    /api/datasets                            datasets with their FOVs and channels, samples
    /api/datasets/{dataset}                  metadata.json of a dataset (as ``pyama-flow info``) and FOVs
    /api/samples                             sample -> [{dataset, fov}]
    /api/fov/{dataset}/{fov}                 channels, frames, times, traces file, models, QC files
    /api/frame/{dataset}/{fov}.png           a frame as PNG: ?channel=&t=&layer=raw|background|corrected
                                             &outlines=1&ids=1&low=1&high=99&max_side=1024
                                             &upscale=1 (magnify small frames to max_side)
    /api/stats/{dataset}/{fov}?t=            per-channel statistics of a frame
    /api/cell_at/{dataset}/{fov}?t=&x=&y=    track id under a full-resolution pixel (&radius=)
    /api/traces/{dataset}/{fov}              every cell's trace (?columns=a,b), with the first
                                             model's r_squared and status and whether it is reviewed
    /api/cell/{dataset}/{fov}/{cell}         one cell's rows, fits and fitted curves (?column=)
    POST /api/mark/{dataset}/{fov}/{cell}    body {"good": false}: append a decision to curation.csv

Only files under the results folder are served (:meth:`Results.path`);
anything else is a logged 404. Edits go only to ``curation.csv`` (the
decisions log, :mod:`pyama_flow.traces.curation`) of a FOV folder. A POST must be JSON from the page's own origin, and when
bound to a loopback address only loopback host names are accepted, so
another web site open in the same browser can neither read nor edit
(DNS rebinding, cross-site requests).
"""

from __future__ import annotations

import hmac
import json
import logging
import math
import mimetypes
import re
import time
import traceback
from collections.abc import Callable, Iterable
from importlib import resources
from http.cookies import CookieError, SimpleCookie
from typing import Any
from urllib.parse import parse_qs, urlsplit
from wsgiref.util import FileWrapper

from pyama_flow.report import display
from pyama_flow.io.base import InputError
from pyama_flow.viewer import data, render
from pyama_flow.viewer.results import BadRequest, NotFound, Results, fov_times

log = logging.getLogger("pyama_flow.viewer")

STATIC_FILES = {"index.html": "text/html; charset=utf-8",
                "viewer.js": "text/javascript; charset=utf-8",
                "viewer.css": "text/css; charset=utf-8"}
#: Cookie carrying the access token after the first page load (``?token=``).
TOKEN_COOKIE = "pyama_flow_token"
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
#: Default display size of a frame (larger side, px).
DEFAULT_MAX_SIDE = 1024

#: (status line, headers, body): the body is bytes or, for files, an iterable of chunks.
Response = tuple[str, list[tuple[str, str]], Any]
_STATUS = {200: "200 OK", 400: "400 Bad Request", 403: "403 Forbidden", 404: "404 Not Found",
           405: "405 Method Not Allowed", 500: "500 Internal Server Error"}


def json_response(payload: Any, status: int = 200) -> Response:
    """A JSON body (NaN/inf refused: callers convert them to ``null``)."""
    body = json.dumps(payload, allow_nan=False, separators=(",", ":")).encode("utf-8")
    return _STATUS[status], [("Content-Type", "application/json"), ("Cache-Control", "no-store")], body


def error_response(status: int, message: str) -> Response:
    return json_response({"error": message}, status)


def _hex(color: tuple[float, float, float]) -> str:
    return "#" + "".join(f"{int(round(255 * v)):02x}" for v in color)


class ViewerApp:
    """WSGI application serving one results folder.

    Parameters
    ----------
    results_dir : path-like
        The workflow's ``results/`` folder (or the folder containing it).
    allowed_hosts : iterable of str or None
        Host names accepted in the ``Host`` header (``None``: any). The
        command passes the loopback names when bound to a loopback address.
    cache_bytes : int
        Budget of the rendered-PNG cache.
    """

    def __init__(self, results_dir: Any, allowed_hosts: Iterable[str] | None = None,
                 cache_bytes: int = 64 * 2**20, token: str | None = None) -> None:
        self.token = token
        self.results = Results(results_dir)
        self.renderer = render.FrameRenderer(cache_bytes)
        self.allowed_hosts = None if allowed_hosts is None else {h.lower() for h in allowed_hosts}
        self._routes: list[tuple[str, re.Pattern, Callable[..., Response]]] = [
            ("GET", re.compile(r"^/$"), self.page),
            ("GET", re.compile(r"^/static/(?P<name>[^/]+)$"), self.static),
            ("GET", re.compile(r"^/files/(?P<rel>.+)$"), self.file),
            ("GET", re.compile(r"^/api/datasets$"), self.api_datasets),
            ("GET", re.compile(r"^/api/datasets/(?P<dataset>[^/]+)$"), self.api_dataset),
            ("GET", re.compile(r"^/api/samples$"), self.api_samples),
            ("GET", re.compile(r"^/api/fov/(?P<dataset>[^/]+)/(?P<fov>\d+)$"), self.api_fov),
            ("GET", re.compile(r"^/api/frame/(?P<dataset>[^/]+)/(?P<fov>\d+)\.png$"), self.api_frame),
            ("GET", re.compile(r"^/api/stats/(?P<dataset>[^/]+)/(?P<fov>\d+)$"), self.api_stats),
            ("GET", re.compile(r"^/api/cell_at/(?P<dataset>[^/]+)/(?P<fov>\d+)$"), self.api_cell_at),
            ("GET", re.compile(r"^/api/traces/(?P<dataset>[^/]+)/(?P<fov>\d+)$"), self.api_traces),
            ("GET", re.compile(r"^/api/cell/(?P<dataset>[^/]+)/(?P<fov>\d+)/(?P<cell>\d+)$"), self.api_cell),
            ("POST", re.compile(r"^/api/mark/(?P<dataset>[^/]+)/(?P<fov>\d+)/(?P<cell>\d+)$"), self.api_mark),
        ]

    # -- WSGI --------------------------------------------------------------------

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        status, headers, body = self.handle(environ)
        headers = headers + [("X-Content-Type-Options", "nosniff")]
        if isinstance(body, bytes):
            headers.append(("Content-Length", str(len(body))))
            body = [body]
        start_response(status, headers)
        if environ.get("REQUEST_METHOD", "GET").upper() == "HEAD":
            getattr(body, "close", lambda: None)()
            return []
        return body

    def handle(self, environ: dict) -> Response:
        """Route one request and turn exceptions into HTTP errors."""
        method = environ.get("REQUEST_METHOD", "GET").upper()
        path = environ.get("PATH_INFO", "") or "/"
        try:
            self._check_host(environ)
            query = {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
            by_query = self._check_token(environ, query)
            if by_query and path == "/" and method in ("GET", "HEAD"):
                status, headers, body = self.page(query)
                cookie = f"{TOKEN_COOKIE}={self.token}; Path=/; HttpOnly; SameSite=Strict"
                return status, headers + [("Set-Cookie", cookie)], body
            allowed = []
            for route_method, pattern, handler in self._routes:
                m = pattern.match(path)
                if m is None:
                    continue
                if route_method != (method if method != "HEAD" else "GET"):
                    allowed.append(route_method)
                    continue
                if method == "POST":
                    self._check_post(environ)
                    return handler(query=query, environ=environ, **m.groupdict())
                return handler(query=query, **m.groupdict())
            if allowed:
                return error_response(405, f"{method} not allowed here")
            if ".." in path.split("/") or "//" in path:
                log.warning("refused path %r: traversal attempt", path)
            return error_response(404, "not found")
        except NotFound as exc:
            return error_response(404, str(exc))
        except BadRequest as exc:
            return error_response(400, str(exc))
        except PermissionError as exc:
            log.warning("forbidden %s %s: %s", method, path, exc)
            return error_response(403, str(exc))
        except Exception:  # noqa: BLE001 - a server must answer
            log.error("error in %s %s\n%s", method, path, traceback.format_exc())
            return error_response(500, "internal error (see the server log)")

    def _check_token(self, environ: dict, query: dict) -> bool:
        """Refuse (403) a request without the access token; True if it came as ``?token=``.

        The token is accepted as the ``token`` query parameter, the
        ``X-Pyama-Token`` header or the cookie the first page load sets.
        """
        if self.token is None:
            return False
        if hmac.compare_digest(query.get("token", ""), self.token):
            return True
        header = environ.get("HTTP_X_PYAMA_TOKEN", "")
        jar = SimpleCookie()
        try:
            jar.load(environ.get("HTTP_COOKIE", ""))
        except CookieError:
            pass
        cookie = jar[TOKEN_COOKIE].value if TOKEN_COOKIE in jar else ""
        if hmac.compare_digest(header, self.token) or hmac.compare_digest(cookie, self.token):
            return False
        raise PermissionError("missing or wrong access token: open the URL printed by "
                              "`pyama-flow view` (it ends in ?token=...)")

    def _check_host(self, environ: dict) -> None:
        if self.allowed_hosts is None:
            return
        host = environ.get("HTTP_HOST") or environ.get("SERVER_NAME", "")
        name = urlsplit(f"//{host}").hostname or ""
        if name.lower() not in self.allowed_hosts and f"[{name.lower()}]" not in self.allowed_hosts:
            raise PermissionError(f"host {host!r} not allowed (bind with --host to serve other names)")

    def _check_post(self, environ: dict) -> None:
        ctype = environ.get("CONTENT_TYPE", "").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise BadRequest("POST needs Content-Type: application/json")
        origin = environ.get("HTTP_ORIGIN")
        if origin:
            host = environ.get("HTTP_HOST", "")
            if urlsplit(origin).netloc.lower() != host.lower():
                raise PermissionError(f"cross-origin POST from {origin!r} refused")

    # -- static ---------------------------------------------------------------------

    def page(self, query: dict) -> Response:
        return self.static(query, "index.html")

    def static(self, query: dict, name: str) -> Response:
        if name not in STATIC_FILES:
            raise NotFound(f"no static file {name!r}")
        body = resources.files(__package__).joinpath("static", name).read_bytes()
        return "200 OK", [("Content-Type", STATIC_FILES[name]), ("Cache-Control", "no-cache")], body

    def file(self, query: dict, rel: str) -> Response:
        """A file under the results, streamed (stacks can be large)."""
        path = self.results.existing(rel)
        ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        if ctype.startswith("text/"):
            ctype += "; charset=utf-8"
        size = path.stat().st_size
        # a result file is shown, not trusted: sandboxed, no script in it reaches the API
        headers = [("Content-Type", ctype), ("Cache-Control", "no-cache"),
                   ("Content-Security-Policy", "sandbox"), ("Content-Length", str(size))]
        return "200 OK", headers, FileWrapper(open(path, "rb"), 2**20)

    # -- datasets, samples, FOVs ------------------------------------------------------

    def api_datasets(self, query: dict) -> Response:
        out = []
        for name in self.results.datasets():
            meta = self.results.metadata(name)
            out.append({
                "name": name,
                "fovs": self.results.fovs(name),
                "channel_names": meta.get("channel_names", []),
                "n_frames": meta.get("n_frames"),
                "height": meta.get("height"),
                "width": meta.get("width"),
                "format": meta.get("format"),
                "path": meta.get("path"),
            })
        return json_response({"root": str(self.results.root), "datasets": out,
                              "samples": self.results.samples()})

    def api_dataset(self, query: dict, dataset: str) -> Response:
        meta = self.results.metadata(dataset)
        return json_response({"name": dataset, "metadata": _finite(meta), "fovs": self.results.fovs(dataset)})

    def api_samples(self, query: dict) -> Response:
        return json_response(self.results.samples())

    def api_fov(self, query: dict, dataset: str, fov: str) -> Response:
        return json_response(_finite(self.fov_info(dataset, int(fov))))

    def fov_info(self, dataset: str, fov: int) -> dict[str, Any]:
        """Everything the page needs to show a FOV (see the module docstring)."""
        res = self.results
        meta = res.metadata(dataset)
        fov_dir = res.fov_dir(dataset, fov)
        channels = res.raw_channels(dataset, fov)
        names = meta.get("channel_names", [])
        traces_path = res.traces_path(dataset, fov)
        columns: list[str] = []
        n_cells = n_good = 0
        stale_decisions: list[int] = []
        if traces_path is not None:
            df, stale_decisions = data.curated(traces_path)
            columns = list(df.columns)
            n_cells = int(df["cell"].nunique()) if len(df) else 0
            n_good = int(df.loc[df["good"], "cell"].nunique()) if len(df) and "good" in df else 0
        pc = data.phase_channel(columns)
        shape, n_frames, dtype = None, 0, None
        frames_missing = None
        if channels:
            try:
                with render.open_frames(res.raw_file(dataset, fov, channels[0])) as reader:
                    n_frames, shape, dtype = len(reader), reader.shape[1:], str(reader.dtype)
            except (OSError, InputError) as exc:
                frames_missing = f"frames unavailable: {exc}"
                log.warning("%s FOV %s: %s", dataset, fov, frames_missing)
        if shape is None and (fov_dir / "labels.tif").is_file():
            with render.StackReader(fov_dir / "labels.tif") as reader:
                n_frames, shape = len(reader), reader.shape[1:]
        ch_info = []
        for c in channels:
            name = names[c] if c < len(names) else f"C{c}"
            phase = c == pc if pc is not None else display.looks_like_phase(name)
            ch_info.append({"index": c, "name": name, "phase": phase,
                            "background": (fov_dir / f"background_ch{c}.npz").is_file(),
                            "color": _hex(display.channel_color(name, c, phase))})
        models = res.fit_models(dataset, fov)
        decisions = fov_dir / data.DECISIONS
        stale = {}
        for m in models:
            fits_mtime = (fov_dir / f"fits_{m}.csv").stat().st_mtime
            stale[m] = decisions.is_file() and decisions.stat().st_mtime > fits_mtime
        sample = next((s for s, members in res.samples().items()
                       if {"dataset": dataset, "fov": fov} in members), None)
        return {
            "dataset": dataset,
            "fov": fov,
            "dir": res.relative(fov_dir),
            "sample": sample,
            "channels": ch_info,
            "phase_channel": pc,
            "n_frames": n_frames,
            "height": shape[0] if shape else None,
            "width": shape[1] if shape else None,
            "dtype": dtype,
            "times": fov_times(meta, fov, n_frames),
            "time_source": (meta.get("time_source") or {}).get(str(fov)),
            "pixel_size_um": meta.get("pixel_size_um"),
            "labels": (fov_dir / "labels.tif").is_file(),
            "traces": traces_path.name if traces_path is not None else None,
            "decisions": decisions.is_file(),
            "stale_decisions": stale_decisions,
            "frames_missing": frames_missing,
            "n_cells": n_cells,
            "n_good": n_good,
            "value_columns": data.feature_columns(columns),
            "value_column": data.default_value_column(columns),
            "models": models,
            "fits_stale": stale,
            "qc": res.qc_files(dataset, fov),
            "z_note": "Z is resolved by extract (one plane or max projection per the config)",
        }

    # -- frames -----------------------------------------------------------------------

    def frame_request(self, dataset: str, fov: int, query: dict) -> render.FrameRequest:
        """Validate a frame query into a :class:`~.render.FrameRequest`."""
        res = self.results
        channels = res.raw_channels(dataset, fov)
        if not channels:
            raise NotFound("this FOV has no extracted frames")
        channel = _int(query, "channel", channels[0])
        if channel not in channels:
            raise NotFound(f"no channel {channel} (have {channels})")
        layer = query.get("layer", "raw")
        if layer not in render.LAYERS:
            raise BadRequest(f"layer must be one of {', '.join(render.LAYERS)}")
        bg = res.fov_file(dataset, fov, f"background_ch{channel}.npz")
        if layer != "raw" and not bg.is_file():
            raise NotFound(f"channel {channel} has no background model")
        labels = res.fov_file(dataset, fov, "labels.tif")
        low, high = _float(query, "low", 1.0), _float(query, "high", 99.0)
        if not 0 <= low < high <= 100:
            raise BadRequest("need 0 <= low < high <= 100")
        return render.FrameRequest(
            raw_path=res.raw_file(dataset, fov, channel),
            frame=_int(query, "t", 0),
            labels_path=labels if labels.is_file() else None,
            background_path=bg if bg.is_file() else None,
            layer=layer,
            low=low,
            high=high,
            max_side=min(max(_int(query, "max_side", DEFAULT_MAX_SIDE), 64), 8192),
            outlines=_flag(query, "outlines"),
            ids=_flag(query, "ids"),
            upscale=_flag(query, "upscale"),
        )

    def api_frame(self, query: dict, dataset: str, fov: str) -> Response:
        request = self.frame_request(dataset, int(fov), query)
        start = time.perf_counter()
        try:
            png, info = self.renderer.png(request)
        except IndexError as exc:
            raise NotFound(str(exc)) from None
        except (OSError, InputError) as exc:
            raise NotFound(f"frames unavailable: {exc}") from None
        ms = (time.perf_counter() - start) * 1000
        headers = [("Content-Type", "image/png"), ("Cache-Control", "no-cache"),
                   ("X-Render-Ms", f"{ms:.1f}"), ("X-Cached", "1" if info.get("cached") else "0")]
        headers += [("X-Scale-Factor", str(info["factor"])),
                    ("X-Magnification", str(info["magnification"])),
                    ("X-Scale", f"{info['scale']:.9g}"),
                    ("X-Display-Range", f"{info['limits'][0]:.6g},{info['limits'][1]:.6g}")]
        return "200 OK", headers, png

    def api_stats(self, query: dict, dataset: str, fov: str) -> Response:
        res = self.results
        meta = res.metadata(dataset)
        names = meta.get("channel_names", [])
        t = _int(query, "t", 0)
        out = []
        for c in res.raw_channels(dataset, fov):
            try:
                stats = render.frame_stats(res.raw_file(dataset, fov, c), t)
            except IndexError as exc:
                raise NotFound(str(exc)) from None
            except (OSError, InputError) as exc:
                raise NotFound(f"frames unavailable: {exc}") from None
            out.append({"channel": c, "name": names[c] if c < len(names) else f"C{c}", **stats})
        return json_response({"dataset": dataset, "fov": int(fov), "t": t, "channels": out})

    def api_cell_at(self, query: dict, dataset: str, fov: str) -> Response:
        labels = self.results.fov_file(dataset, fov, "labels.tif")
        if not labels.is_file():
            raise NotFound("this FOV has no labels.tif")
        t = _int(query, "t", 0)
        x, y = _float(query, "x", None), _float(query, "y", None)
        if x is None or y is None:
            raise BadRequest("need x and y (full-resolution pixels)")
        try:
            frame = render.read_page(labels, t)
        except IndexError as exc:
            raise NotFound(str(exc)) from None
        cell = render.cell_at(frame, x, y, max(_float(query, "radius", 0.0), 0.0))
        in_traces, good = False, None
        traces_path = self.results.traces_path(dataset, fov)
        if cell is not None and traces_path is not None:
            df = data.curated(traces_path)[0]
            rows = df[df["cell"] == cell]
            in_traces = not rows.empty
            good = bool(rows["good"].any()) if in_traces else None
        return json_response({"cell": cell, "t": t, "x": x, "y": y, "in_traces": in_traces, "good": good})

    # -- traces, fits, curation -------------------------------------------------------

    def _traces(self, dataset: str, fov: str):
        path = self.results.traces_path(dataset, fov)
        if path is None:
            raise NotFound("this FOV has no traces.csv")
        return path, data.curated(path)[0]

    def api_traces(self, query: dict, dataset: str, fov: str) -> Response:
        path, df = self._traces(dataset, fov)
        columns = [c for c in query.get("columns", "").split(",") if c] or None
        try:
            payload = data.fov_traces(df, columns)
        except KeyError as exc:
            raise BadRequest(f"unknown column(s): {exc}") from None
        # what the cell list sorts by: the first model's R² and status, and the reviewed cells
        models = self.results.fit_models(dataset, fov)
        fits = (data.read_table(self.results.fov_file(dataset, fov, f"fits_{models[0]}.csv"))
                if models else None)
        decided = list(data.curation.load_decisions(self.results.fov_dir(dataset, fov)))
        review = data.review_columns(fits, decided)
        for entry in payload["cells"]:
            extra = review.get(entry["cell"], {})
            entry["r_squared"] = extra.get("r_squared")
            entry["status"] = extra.get("status")
            entry["reviewed"] = bool(extra.get("reviewed", False))
        return json_response({"dataset": dataset, "fov": int(fov), "file": path.name,
                              "review_model": models[0] if models else None, **payload})

    def api_cell(self, query: dict, dataset: str, fov: str, cell: str) -> Response:
        path, df = self._traces(dataset, fov)
        stale_decisions = data.curated(path)[1]
        try:
            rows = data.cell_rows(df, int(cell))
        except KeyError as exc:
            raise NotFound(str(exc).strip("'\"")) from None
        column = query.get("column") or data.default_value_column(df.columns)
        if column is not None and column not in df.columns:
            raise BadRequest(f"unknown column {column!r}")
        fov_dir = self.results.fov_dir(dataset, fov)
        decisions = fov_dir / data.DECISIONS
        fits = []
        for model in self.results.fit_models(dataset, fov):
            fits_path = self.results.fov_file(dataset, fov, f"fits_{model}.csv")
            record = data.fit_record(data.read_table(fits_path), int(cell), model)
            if record is None:
                fits.append({"model": model, "fitted": False})
                continue
            record["fitted"] = True
            record["curve"] = data.fit_curve(model, record["params"], rows["time"])
            record["file"] = fits_path.name
            record["stale"] = decisions.is_file() and decisions.stat().st_mtime > fits_path.stat().st_mtime
            fits.append(record)
        return json_response({
            "dataset": dataset, "fov": int(fov), "cell": int(cell), "file": path.name,
            "good": any(rows["good"]), "stale_decision": int(cell) in stale_decisions,
            "value_column": column, "rows": rows, "fits": fits,
        })

    def api_mark(self, query: dict, environ: dict, dataset: str, fov: str, cell: str) -> Response:
        try:
            size = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            raise BadRequest("bad Content-Length") from None
        if not 0 < size <= 4096:
            raise BadRequest("need a small JSON body {\"good\": true|false}")
        try:
            body = json.loads(environ["wsgi.input"].read(size))
        except ValueError:
            raise BadRequest("body is not JSON") from None
        if not isinstance(body, dict) or not isinstance(body.get("good"), bool):
            raise BadRequest("body must be {\"good\": true|false}")
        fov_dir = self.results.fov_dir(dataset, fov)
        self.results.fov_file(dataset, fov, data.DECISIONS)  # checked: stays inside the results
        try:
            result = data.mark_cell(fov_dir, int(cell), body["good"])
        except FileNotFoundError as exc:
            raise NotFound(str(exc)) from None
        except KeyError as exc:
            raise NotFound(str(exc).strip("'\"")) from None
        log.info("%s FOV %s: cell %s marked %s (%d rows) in %s", dataset, fov, cell,
                 "good" if body["good"] else "bad", result["rows"], data.DECISIONS)
        result["file"] = self.results.relative(fov_dir / data.DECISIONS)
        return json_response(result)


# -- query parsing ---------------------------------------------------------------------


def _int(query: dict, key: str, default: int) -> int:
    if key not in query:
        return default
    try:
        return int(query[key])
    except ValueError:
        raise BadRequest(f"{key} must be an integer") from None


def _float(query: dict, key: str, default: float | None) -> float | None:
    if key not in query:
        return default
    try:
        value = float(query[key])
    except ValueError:
        raise BadRequest(f"{key} must be a number") from None
    if not math.isfinite(value):
        raise BadRequest(f"{key} must be finite")
    return value


def _flag(query: dict, key: str) -> bool:
    return query.get(key, "0").lower() in ("1", "true", "yes", "on")


def _finite(value: Any) -> Any:
    """A JSON value with NaN / inf replaced by ``None`` (strict JSON)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value
