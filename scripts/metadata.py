from _common import run


def main(snakemake):
    from pyama_flow.io.extract import dataset_metadata
    from pyama_flow.io.atomic import write_json

    p = snakemake.params
    meta = dataset_metadata(snakemake.input[0], p.reader, p.frame_interval_min, p.fingerprint)
    write_json(snakemake.output[0], meta)


run(main, snakemake)  # noqa: F821
