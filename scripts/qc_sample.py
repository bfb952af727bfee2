from _common import run


def main(snakemake):
    from pyama_flow.qc import SAMPLE_PLOTS, render_sample_analysis

    i, o, wc = snakemake.input, snakemake.output, snakemake.wildcards
    render_sample_analysis(
        fits_paths=list(i.fits),
        traces_path=i.traces,
        sample=wc.sample,
        model=wc.model,
        out_paths={key: getattr(o, key) for key in SAMPLE_PLOTS},
        summary_path=o.summary,
        color=snakemake.params.color,
    )


run(main, snakemake)  # noqa: F821
