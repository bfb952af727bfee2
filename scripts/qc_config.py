from _common import run


def main(snakemake):
    from pyama_flow.report.config_page import render_config

    render_config(snakemake.params.config, snakemake.output[0])


run(main, snakemake)  # noqa: F821
