"""FOV selections such as ``"0-9, 12"``, ``[0, 3]`` or ``"all"``."""

from __future__ import annotations

from collections.abc import Sequence


def parse_fovs(spec: str | int | Sequence[int], n_fovs: int | None = None, what: str = "fovs") -> list[int]:
    """Sorted unique FOV indices of a selection.

    Parameters
    ----------
    spec : str, int or list of int
        ``"all"``, ``"0-5, 7"``, ``3`` or ``[0, 1, 2]``.
    n_fovs : int, optional
        Number of FOVs in the file: needed for ``"all"``; every index is
        checked against it.
    what : str
        Name of the config key, for error messages.

    Raises
    ------
    ValueError
        One line naming ``what`` and the offending part.
    """
    if isinstance(spec, bool):
        raise ValueError(f"{what}: expected 'all', a range string like '0-9, 12' or a list")
    if isinstance(spec, int):
        out = [spec]
    elif isinstance(spec, str):
        text = spec.replace(" ", "")
        if text.lower() == "all":
            if n_fovs is None:
                raise ValueError(f"{what}: 'all' needs the number of FOVs in the file")
            return list(range(n_fovs))
        if not text:
            raise ValueError(f"{what}: empty FOV selection")
        out = []
        for part in text.split(","):
            if not part:
                continue
            try:
                if "-" in part[1:]:
                    a, b = part.split("-", 1)
                    lo, hi = int(a), int(b)
                    if lo > hi:
                        raise ValueError
                    out.extend(range(lo, hi + 1))
                else:
                    out.append(int(part))
            except ValueError:
                raise ValueError(f"{what}: cannot read {part!r} (use e.g. '0-9, 12')") from None
    else:
        out = [int(v) for v in spec]
    out = sorted(set(out))
    if not out:  # e.g. "," or " , ": a selection of nothing is a mistake, not zero FOVs
        raise ValueError(f"{what}: {spec!r} selects no FOV (use e.g. '0-9, 12' or 'all')")
    if any(v < 0 for v in out):
        raise ValueError(f"{what}: FOV indices must be >= 0, got {out}")
    if n_fovs is not None and out and out[-1] >= n_fovs:
        bad = [v for v in out if v >= n_fovs]
        raise ValueError(f"{what}: FOV {bad[0]} is outside the file (valid: 0-{n_fovs - 1})")
    return out
