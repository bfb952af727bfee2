from _common import run


def main(snakemake):
    import pandas as pd

    from pyama_flow.fitting.fit import best_models
    from pyama_flow.io.atomic import atomic_path

    fits = pd.concat([pd.read_csv(p) for p in snakemake.input], ignore_index=True)
    with atomic_path(snakemake.output[0]) as tmp:
        best_models(fits).to_csv(tmp, index=False, float_format="%.9g")


run(main, snakemake)  # noqa: F821
