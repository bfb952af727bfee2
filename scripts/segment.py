from _common import run


def main(snakemake):
    from pyama_flow.steps import segment

    p = snakemake.params
    segment(snakemake.input[0], snakemake.output[0], p.method, p.options, compression=p.compression)


run(main, snakemake)  # noqa: F821
