from _common import run


def main(snakemake):
    from pyama_flow.background.step import correct

    i, p = snakemake.input, snakemake.params
    correct(i.raw, i.seg, snakemake.output[0], p.tile_size, p.dilation, p.expand_px)


run(main, snakemake)  # noqa: F821
