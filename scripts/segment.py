from _common import run


def main(snakemake):
    from pyama_flow.segmentation.step import segment, segment_external

    i, p = snakemake.input, snakemake.params
    if p.method == "external":
        segment_external(i.raw, i.labels, snakemake.output[0], int(snakemake.wildcards.fov),
                         compression=p.compression)
    else:
        segment(i.raw, snakemake.output[0], p.method, p.options, compression=p.compression)


run(main, snakemake)  # noqa: F821
