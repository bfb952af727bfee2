from _common import run


def main(snakemake):
    import os

    import pandas as pd

    from pyama_flow import analysis

    i, p = snakemake.input, snakemake.params
    fits = pd.concat(
        [pd.read_csv(f).assign(sample=s) for f, s in zip(i.fits, p.fit_samples)],
        ignore_index=True,
    )
    traces = analysis.stack_samples({s: pd.read_csv(f) for f, s in zip(i.traces, p.trace_samples)})
    out_dir = os.path.dirname(snakemake.output[0])
    analysis.analyze(fits, traces, out_dir, model=snakemake.wildcards.model)


run(main, snakemake)  # noqa: F821
