from _common import run


def main(snakemake):
    from pyama_flow.io.atomic import atomic_path
    from pyama_flow.traces.merge import tidy_traces

    keys = [(ds, int(f)) for ds, f in snakemake.params.datasets_fovs]
    paths = dict(zip(keys, snakemake.input.traces))
    sample_of = {(ds, int(f)): name for ds, f, name in snakemake.params.sample_of}
    table = tidy_traces(sample_of, paths, dict(snakemake.params.channel_names))
    with atomic_path(snakemake.output[0]) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6f")


run(main, snakemake)  # noqa: F821
