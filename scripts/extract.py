from _common import run


def main(snakemake):
    from pyama_flow.steps import extract

    wc, p = snakemake.wildcards, snakemake.params
    extract(snakemake.input[0], p.reader, int(wc.fov), int(wc.c), p.z, snakemake.output[0])


run(main, snakemake)  # noqa: F821
