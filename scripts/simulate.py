from _common import run


def main(snakemake):
    from pyama_flow.simulate import SimulationConfig, simulate_experiment

    cfg = SimulationConfig(**snakemake.params.sim)
    simulate_experiment(snakemake.output.tif, snakemake.output.truth, cfg)


run(main, snakemake)  # noqa: F821
