from _common import run


def main(snakemake):
    from pyama_flow.tracking.step import track

    o = snakemake.output
    p = snakemake.params
    track(snakemake.input[0], o.labels, o.lineage, p.tracking, compression=p.compression)


run(main, snakemake)  # noqa: F821
