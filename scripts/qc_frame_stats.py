from _common import run


def main(snakemake):
    from pyama_flow.report.figures import fov_title
    from pyama_flow.report.statistics import render_frame_statistics

    i, o, p, wc = snakemake.input, snakemake.output, snakemake.params, snakemake.wildcards
    render_frame_statistics(
        stats_path=i.stats,
        metadata_path=i.metadata,
        fov=int(wc.fov),
        channel=int(wc.c),
        png_path=o.plot,
        html_path=o.table,
        title=fov_title(wc.dataset, wc.fov, f"{p.channel} per-frame statistics", p.sample),
        phase=p.phase,
        color=p.color,
    )


run(main, snakemake)  # noqa: F821
