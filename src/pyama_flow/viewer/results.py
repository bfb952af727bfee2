"""The results folder as the viewer sees it: datasets, FOVs, samples and safe paths.

Every file the viewer reads or writes is found through :meth:`Results.path`,
which joins validated name parts onto the results root and refuses (with
:class:`NotFound`, logged) anything that would leave it: ``..`` or empty
parts, absolute paths, and symlinks whose target lies outside the root.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from pathlib import Path
from typing import Any

import pandas as pd

log = logging.getLogger("pyama_flow.viewer")

#: Folder names of a FOV (``fov_000``) and of a dataset (as the workflow's wildcard).
FOV_DIR = re.compile(r"^fov_(\d{3,})$")
DATASET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
RAW_STACK = re.compile(r"^raw_ch(\d+)\.(tif|json)$")  # a stack, or a reference into the input
FITS_FILE = re.compile(r"^fits_([a-z_]+)\.csv$")
#: Top-level folders of the results that are not datasets.
NOT_DATASETS = frozenset({"samples", "analysis", "logs", "benchmarks", "qc"})


class NotFound(Exception):
    """A request for something that does not exist or may not be served (HTTP 404)."""


class BadRequest(Exception):
    """A malformed request: missing or invalid parameter (HTTP 400)."""


def find_results_root(path: str | os.PathLike) -> Path:
    """The folder holding ``{dataset}/metadata.json``: ``path/results`` (a workflow
    folder) if it holds one, else ``path`` itself.

    Raises
    ------
    FileNotFoundError
        Neither ``path`` nor ``path/results`` holds a dataset.
    """
    base = Path(path).expanduser().resolve()
    for candidate in (base / "results", base):
        if candidate.is_dir() and any(candidate.glob("*/metadata.json")):
            return candidate
    raise FileNotFoundError(f"{path}: no results here (expected {{dataset}}/metadata.json "
                            "in it or in its results/ folder)")


class Results:
    """Read-only view of a results folder, plus the paths the viewer may edit.

    Parameters
    ----------
    root : path-like
        The workflow's ``results/`` folder (or the folder that contains it).
    """

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = find_results_root(root)
        self._json_cache: dict[str, tuple[float, Any]] = {}
        self._samples_cache: tuple[tuple, dict[str, Any]] | None = None
        self._lock = threading.Lock()

    # -- safe paths ---------------------------------------------------------

    def path(self, *parts: str) -> Path:
        """``root / parts...`` if it stays inside the root, else :class:`NotFound`.

        Each part may contain ``/`` (a relative path from a URL); ``..``, ``.``,
        empty parts, backslashes, NUL and absolute paths are refused, and the
        resolved path (symlinks followed) must lie inside the resolved root.
        The path need not exist.
        """
        pieces: list[str] = []
        for part in parts:
            text = str(part)
            if text.startswith("/") or "\\" in text or "\x00" in text or re.match(r"^[A-Za-z]:", text):
                self._refuse(parts, "absolute or malformed path")
            for piece in text.split("/"):
                if piece in ("", ".", ".."):
                    self._refuse(parts, "'..', '.' or empty path part")
                pieces.append(piece)
        candidate = self.root.joinpath(*pieces)
        real = Path(os.path.realpath(candidate))
        if real != self.root and self.root not in real.parents:
            self._refuse(parts, f"resolves outside the results ({real})")
        return candidate

    def _refuse(self, parts: tuple, why: str) -> None:
        log.warning("refused path %r: %s", "/".join(str(p) for p in parts), why)
        raise NotFound("not found")

    def existing(self, *parts: str) -> Path:
        """:meth:`path` of a file that exists, else :class:`NotFound`."""
        p = self.path(*parts)
        if not p.is_file():
            raise NotFound(f"{'/'.join(parts)}: no such file")
        return p

    # -- datasets and FOVs -----------------------------------------------------

    def datasets(self) -> list[str]:
        """Names of the datasets: folders of the root with a ``metadata.json``."""
        out = []
        for entry in sorted(self.root.iterdir()):
            if entry.name in NOT_DATASETS or not DATASET_NAME.match(entry.name):
                continue
            try:
                if self.path(entry.name, "metadata.json").is_file():
                    out.append(entry.name)
            except NotFound:
                continue  # a dataset symlinked from outside is not served
        return out

    def dataset_dir(self, dataset: str) -> Path:
        """The folder of a dataset, checked to be one (:class:`NotFound` otherwise)."""
        if not DATASET_NAME.match(dataset or "") or dataset in NOT_DATASETS:
            self._refuse((dataset,), "not a dataset name")
        d = self.path(dataset)
        if not (d / "metadata.json").is_file():
            raise NotFound(f"no dataset {dataset!r}")
        return d

    def metadata(self, dataset: str) -> dict[str, Any]:
        """``{dataset}/metadata.json`` (the same JSON as ``pyama-flow info`` plus FOV times)."""
        self.dataset_dir(dataset)
        return self.read_json(self.path(dataset, "metadata.json"))

    def fovs(self, dataset: str) -> list[int]:
        """FOV indices with a result folder (``fov_NNN``), sorted."""
        d = self.dataset_dir(dataset)
        out = []
        for entry in d.iterdir():
            m = FOV_DIR.match(entry.name)
            if m and entry.is_dir():
                out.append(int(m.group(1)))
        return sorted(out)

    def fov_dir(self, dataset: str, fov: int | str) -> Path:
        """The result folder of one FOV (:class:`NotFound` if absent)."""
        self.dataset_dir(dataset)
        try:
            index = int(fov)
        except (TypeError, ValueError):
            raise NotFound(f"bad FOV {fov!r}") from None
        if index < 0:
            raise NotFound(f"bad FOV {fov!r}")
        d = self.path(dataset, f"fov_{index:03d}")
        if not d.is_dir():
            raise NotFound(f"no FOV {index} in {dataset}")
        return d

    def fov_file(self, dataset: str, fov: int | str, name: str) -> Path:
        """A file of a FOV's folder (checked; it need not exist)."""
        d = self.fov_dir(dataset, fov)
        return self.path(str(d.relative_to(self.root)), name)

    def raw_channels(self, dataset: str, fov: int | str) -> list[int]:
        """Channels with a raw extract (``raw_ch{c}.tif``, or ``raw_ch{c}.json`` with
        ``storage.raw: source``), sorted."""
        d = self.fov_dir(dataset, fov)
        return sorted({int(m.group(1)) for e in d.iterdir() if (m := RAW_STACK.match(e.name))})

    def raw_file(self, dataset: str, fov: int | str, channel: int) -> Path:
        """The raw extract of a channel: the stack where there is one, else the reference."""
        stack = self.fov_file(dataset, fov, f"raw_ch{channel}.tif")
        return stack if stack.is_file() else self.fov_file(dataset, fov, f"raw_ch{channel}.json")

    def fit_models(self, dataset: str, fov: int | str) -> list[str]:
        """Models with a ``fits_{model}.csv`` in the FOV's folder, sorted."""
        d = self.fov_dir(dataset, fov)
        return sorted(m.group(1) for e in d.iterdir() if (m := FITS_FILE.match(e.name)))

    def traces_path(self, dataset: str, fov: int | str) -> Path | None:
        """``traces.csv`` (read with the FOV's decisions applied), else ``None``."""
        p = self.fov_file(dataset, fov, "traces.csv")
        return p if p.is_file() else None

    def qc_files(self, dataset: str, fov: int | str) -> list[str]:
        """Paths (relative to the root) of the FOV's QC pictures and pages."""
        d = self.fov_dir(dataset, fov) / "qc"
        if not d.is_dir():
            return []
        return sorted(str(p.relative_to(self.root)) for p in d.iterdir()
                      if p.suffix in (".png", ".html") and p.is_file())

    # -- samples -------------------------------------------------------------

    def samples(self) -> dict[str, list[dict[str, Any]]]:
        """Sample name -> its FOVs as ``[{"dataset": ..., "fov": ...}]``.

        Read from the merged tables ``samples/{name}/{name}_*_ch_*.csv`` (their
        ``fov`` column). The dataset is the only one when there is one;
        otherwise it is looked up in ``all_traces.csv`` (``sample, dataset,
        fov``), or ``None`` if that table is missing. Cached until a file changes.
        """
        sdir = self.root / "samples"
        files: list[Path] = []
        if sdir.is_dir():
            for entry in sorted(sdir.iterdir()):
                if entry.is_dir() and DATASET_NAME.match(entry.name):
                    tables = sorted(entry.glob(f"{entry.name}_*_ch_*.csv"))
                    if tables:
                        files.append(tables[0])
        tidy = self.root / "all_traces.csv"
        key = tuple((str(f), f.stat().st_mtime) for f in files) + (
            (tidy.stat().st_mtime,) if tidy.is_file() else ())
        with self._lock:
            if self._samples_cache is not None and self._samples_cache[0] == key:
                return self._samples_cache[1]
        datasets = self.datasets()
        lookup: dict[tuple[str, int], str] | None = None
        out: dict[str, list[dict[str, Any]]] = {}
        for f in files:
            name = f.parent.name
            fovs = sorted(int(v) for v in pd.read_csv(f, usecols=["fov"])["fov"].unique())
            if len(datasets) == 1:
                out[name] = [{"dataset": datasets[0], "fov": v} for v in fovs]
                continue
            if lookup is None:
                lookup = _sample_datasets(tidy)
            out[name] = [{"dataset": lookup.get((name, v)), "fov": v} for v in fovs]
        with self._lock:
            self._samples_cache = (key, out)
        return out

    # -- small helpers ----------------------------------------------------------

    def read_json(self, path: Path) -> Any:
        """A JSON file, cached until its modification time changes."""
        mtime = path.stat().st_mtime
        with self._lock:
            hit = self._json_cache.get(str(path))
            if hit is not None and hit[0] == mtime:
                return hit[1]
        data = json.loads(path.read_text(encoding="utf-8"))
        with self._lock:
            self._json_cache[str(path)] = (mtime, data)
        return data

    def relative(self, path: Path) -> str:
        """``path`` relative to the root, with ``/``."""
        return Path(path).relative_to(self.root).as_posix()


def _sample_datasets(tidy: Path) -> dict[tuple[str, int], str]:
    """``(sample, fov) -> dataset`` from ``all_traces.csv`` (empty without it)."""
    if not tidy.is_file():
        return {}
    out: dict[tuple[str, int], str] = {}
    cols = ["sample", "dataset", "fov"]
    for chunk in pd.read_csv(tidy, usecols=cols, chunksize=1_000_000, dtype={"sample": str, "dataset": str}):
        for s, d, f in chunk.drop_duplicates().itertuples(index=False):
            if isinstance(s, str) and s:
                out[(s, int(f))] = d
    return out


def fov_times(meta: dict[str, Any], fov: int, n_frames: int) -> list[float] | None:
    """Time (minutes) of each frame of a FOV from ``metadata.json``, if recorded."""
    times = (meta.get("fov_times_min") or {}).get(str(int(fov)))
    if times is None:
        times = meta.get("time_min")
    if times is None or len(times) < n_frames:
        return None
    return [float(v) for v in times[:n_frames]]
