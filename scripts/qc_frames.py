from _common import run


def main(snakemake):
    from pyama_flow.report.figures import fov_title
    from pyama_flow.report.frames import render_frames

    i, p, wc = snakemake.input, snakemake.params, snakemake.wildcards
    render_frames(
        raw_paths=dict(zip(p.channels, i.raw)),
        metadata_path=i.metadata,
        fov=int(wc.fov),
        phase_channel=p.phase,
        out_path=snakemake.output[0],
        title=fov_title(wc.dataset, wc.fov, "raw frames", p.sample),
        color=p.color,
    )


run(main, snakemake)  # noqa: F821
