from _common import run


def main(snakemake):
    from pyama_flow.io.extract import extract

    wc, p, o = snakemake.wildcards, snakemake.params, snakemake.output
    extract(snakemake.input[0], p.reader, int(wc.fov), int(wc.c), p.z, o.raw, stats_path=o.stats,
            compression=p.compression, expected_fingerprint=p.fingerprint)


run(main, snakemake)  # noqa: F821
