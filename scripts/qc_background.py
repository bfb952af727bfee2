from _common import run


def main(snakemake):
    from pyama_flow.report.background import render_background
    from pyama_flow.report.figures import fov_title

    i, p, wc = snakemake.input, snakemake.params, snakemake.wildcards
    render_background(
        raw_path=i.raw,
        background_path=i.background,
        metadata_path=i.metadata,
        fov=int(wc.fov),
        channel=int(wc.c),
        out_path=snakemake.output[0],
        title=fov_title(wc.dataset, wc.fov, f"{p.channel} background", p.sample),
        color=p.color,
    )


run(main, snakemake)  # noqa: F821
