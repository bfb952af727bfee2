from _common import run


def main(snakemake):
    from pyama_flow.fitting import fit_traces, tune_malloc, write_fits
    from pyama_flow.traces import read_traces

    tune_malloc()  # this job's process only: faster batched fits, same results
    model = snakemake.wildcards.model
    p = snakemake.params
    df = read_traces(snakemake.input[0])
    fits = fit_traces(
        df,
        [model],
        overrides={model: dict(p.overrides)},
        value_col=p.value_col,
        n_jobs=snakemake.threads,
    )
    write_fits(fits, snakemake.output[0])


run(main, snakemake)  # noqa: F821
