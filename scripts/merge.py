from _common import run


def main(snakemake):
    from pyama_flow.traces.merge import write_sample_tables

    sample, column = snakemake.wildcards.sample, snakemake.wildcards.column
    write_sample_tables(sample, list(snakemake.input.traces), {column: snakemake.output[0]})


run(main, snakemake)  # noqa: F821
