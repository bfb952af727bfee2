from _common import run


def warn_status(log, model, fits):
    """One WARNING with the cells per fit status when any fit is not ``ok``, naming a few of each."""
    counts = fits["status"].value_counts()
    if counts.get("ok", 0) == len(fits):
        log.info("%s: every fit ok (%d cells)", model, len(fits))
        return
    parts = []
    for status in ("ok", "at_bound", "poor_fit", "not_identifiable", "failed"):
        n = int(counts.get(status, 0))
        if status == "ok" or n == 0:
            parts += [f"{status} {n}"] if status == "ok" else []
            continue
        rows = fits[fits["status"] == status]
        named = ", ".join(f"{c}" + (f" ({b})" if b else "") for c, b in zip(rows["cell"][:5], rows["at_bound"][:5]))
        parts.append(f"{status} {n} (cells {named}{' ...' if n > 5 else ''})")
    log.warning("%s: %d of %d fits cannot be trusted: %s; the analysis uses the statuses in "
                "fit.status.include (default ok); parameters at a bound are in the at_bound column",
                model, len(fits) - int(counts.get("ok", 0)), len(fits), "; ".join(parts))


def main(snakemake):
    import logging

    from pyama_flow.fitting.fit import failure_reasons, fit_traces, tune_malloc, write_fits
    from pyama_flow.traces.curation import read_curated

    log = logging.getLogger("pyama_flow")
    tune_malloc()  # this job's process only: faster batched fits, same results
    model = snakemake.wildcards.model
    p = snakemake.params
    df = read_curated(snakemake.input.traces)  # decisions in curation.csv applied
    out = snakemake.output[0]
    fits = fit_traces(
        df,
        [model],
        overrides={model: dict(p.overrides)},
        value_col=p.value_col,
        n_jobs=snakemake.threads,
        t0_bounds=getattr(p, "t0_bounds", "reference"),
        weighting=getattr(p, "weighting", "none"),
        status=dict(getattr(p, "status", {}) or {}),
    )
    if df.empty:
        log.warning("no cells in %s (none detected, or all removed by the traces filters: "
                    "see trace_stats.json); fits skipped: %s has the columns and no rows",
                    snakemake.input.traces, out)
    elif fits.empty:
        log.warning("no good rows in %s (every row has good=False); fits skipped: "
                    "%s has the columns and no rows", snakemake.input.traces, out)
    else:
        reasons = failure_reasons(fits, {model: dict(p.overrides)})
        failed = reasons != ""
        if failed.any():
            listed = ", ".join(f"cell {c}: {r}" for c, r in
                               zip(fits.loc[failed, "cell"][:10], reasons[failed][:10]))
            more = " ..." if failed.sum() > 10 else ""
            log.warning("%s: %d of %d cells not fitted (success=False): %s%s",
                        model, int(failed.sum()), len(fits), listed, more)
        log.info("%s: fitted %d of %d cells", model, int((~failed).sum()), len(fits))
        warn_status(log, model, fits)
    write_fits(fits, out)


run(main, snakemake)  # noqa: F821
