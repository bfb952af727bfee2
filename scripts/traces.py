from _common import run


def main(snakemake):
    from pyama_flow.traces.step import traces

    i, o, p = snakemake.input, snakemake.output, snakemake.params
    traces(
        labels_path=i.labels,
        raw_paths=dict(zip(p.channels, i.raw)),
        background_paths=dict(zip(p.channels, i.background)),
        metadata_path=i.metadata,
        out_path=o.traces,
        fov=int(snakemake.wildcards.fov),
        pc_channel=p.pc_channel,
        background_weight=p.background_weight,
        min_frames=p.min_frames,
        border=p.border,
        lineage_path=i.lineage if p.lineage else None,
        stats_path=o.stats,
        expand_px=p.expand_px,
    )


run(main, snakemake)  # noqa: F821
