from _common import atomic_directory, atomic_outputs, run


def main(snakemake):
    from pyama_flow.devtools.simulate import SimulationConfig, simulate_experiment

    cfg = SimulationConfig(**snakemake.params.sim)
    # the truth folder is filled under a temporary name too: a killed job
    # leaves neither a complete-looking OME-TIFF nor a half-written truth
    with atomic_outputs([snakemake.output.tif]) as (tif,), atomic_directory(snakemake.output.truth) as truth:
        simulate_experiment(tif, truth, cfg)


run(main, snakemake)  # noqa: F821
