from _common import run


def main(snakemake):
    from pyama_flow.steps import track

    o = snakemake.output
    track(snakemake.input[0], o.labels, o.lineage, snakemake.params.tracking)


run(main, snakemake)  # noqa: F821
