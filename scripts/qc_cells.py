from _common import run


def main(snakemake):
    from pyama_flow.report.cells import render_cells
    from pyama_flow.report.figures import fov_title

    i, p, wc = snakemake.input, snakemake.params, snakemake.wildcards
    render_cells(
        trace_stats_path=i.trace_stats,
        tracks_path=i.tracks,
        traces_path=i.traces,
        metadata_path=i.metadata,
        fov=int(wc.fov),
        out_path=snakemake.output[0],
        title=fov_title(wc.dataset, wc.fov, "cells, tracks and filters", p.sample),
        color=p.color,
    )


run(main, snakemake)  # noqa: F821
