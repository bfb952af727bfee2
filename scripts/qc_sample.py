from _common import atomic_outputs, run


def main(snakemake):
    from pyama_flow.report.analysis import SAMPLE_PLOTS, render_sample_analysis

    i, o, wc = snakemake.input, snakemake.output, snakemake.wildcards
    keys = list(SAMPLE_PLOTS)
    # the plots are written by pyama_flow.report.analysis straight to the paths it
    # gets: give it temporary names, renamed when every plot is done
    with atomic_outputs([getattr(o, key) for key in keys]) as tmps:
        render_sample_analysis(
            fits_paths=list(i.fits),
            traces_path=i.traces,
            sample=wc.sample,
            model=wc.model,
            out_paths=dict(zip(keys, map(str, tmps))),
            summary_path=o.summary,
            color=snakemake.params.color,
            include=list(getattr(snakemake.params, "include", ("ok",))),
        )


run(main, snakemake)  # noqa: F821
