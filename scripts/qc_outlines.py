from _common import run


def main(snakemake):
    from pyama_flow.report.figures import fov_title
    from pyama_flow.report.outlines import render_outlines

    i, p, wc = snakemake.input, snakemake.params, snakemake.wildcards
    render_outlines(
        phase_path=i.phase,
        labels_path=i.labels,
        metadata_path=i.metadata,
        fov=int(wc.fov),
        out_path=snakemake.output[0],
        title=fov_title(wc.dataset, wc.fov, "cell outlines and track ids", p.sample),
        color=p.color,
    )


run(main, snakemake)  # noqa: F821
