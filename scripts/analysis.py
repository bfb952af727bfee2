from _common import run, scratch_folder


def main(snakemake):
    import os

    import pandas as pd

    from pyama_flow.report import analysis
    i, p = snakemake.input, snakemake.params
    fits = pd.concat(
        [pd.read_csv(f).assign(sample=s) for f, s in zip(i.fits, p.fit_samples)],
        ignore_index=True,
    )
    traces = analysis.stack_samples({s: pd.read_csv(f) for f, s in zip(i.traces, p.trace_samples)})
    out_dir = os.path.dirname(snakemake.output[0])
    # analyze() writes fixed names straight into a folder: let it write a
    # scratch folder, and move each output into place once all are written
    with scratch_folder(out_dir, "analysis") as tmp:
        analysis.analyze(fits, traces, tmp, model=snakemake.wildcards.model,
                         include=list(getattr(p, "include", analysis.RELIABLE)))
        for out in snakemake.output:
            os.replace(os.path.join(tmp, os.path.basename(out)), out)


run(main, snakemake)  # noqa: F821
