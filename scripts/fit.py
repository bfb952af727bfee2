from _common import run


def main(snakemake):
    import logging

    from pyama_flow.fitting import failure_reasons, fit_traces, tune_malloc, write_fits
    from pyama_flow.curation import read_curated

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
    write_fits(fits, out)


run(main, snakemake)  # noqa: F821
