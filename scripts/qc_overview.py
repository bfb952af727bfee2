from _common import atomic_outputs, run


def main(snakemake):
    import pandas as pd

    from pyama_flow.io.atomic import atomic_path
    from pyama_flow.report.overview import (
        FOVS_PER_PAGE,
        FovResults,
        fov_table,
        overview_html,
        plot_fov_traces,
        plot_sample_comparison,
        sample_table,
    )

    i, o, p = snakemake.input, snakemake.output, snakemake.params
    models = list(p.models)
    fits, stats = iter(i.fits), iter(i.frame_stats)
    results = [
        FovResults(
            dataset=ds, fov=int(fov), sample=sample, trace_stats=ts, traces=tr,
            fits={m: next(fits) for m in models},
            frame_stats=[next(stats) for _ in range(p.n_fluorescence[ds])],
            value_col=p.value_cols[ds],
        )
        for (ds, fov, sample), ts, tr in zip(p.fovs, i.trace_stats, i.traces)
    ]
    colors = dict(p.colors)
    fovs = fov_table(results)
    summaries = [pd.read_csv(s) for s in i.summaries]
    samples = sample_table(pd.concat(summaries, ignore_index=True), p.overrides) if summaries else None
    with atomic_path(o.fovs) as tmp:
        fovs.to_csv(tmp, index=False, float_format="%.6g")
    with atomic_path(o.samples_csv) as tmp:
        (samples if samples is not None else pd.DataFrame()).to_csv(tmp, index=False, float_format="%.6g")
    with atomic_path(o.html) as tmp:
        with open(tmp, "w") as fh:
            fh.write(overview_html(fovs, samples, colors))
    with atomic_outputs(list(o.traces) + list(o.comparison)) as tmps:
        pages, comparison = tmps[: len(o.traces)], tmps[len(o.traces):]
        for k, path in enumerate(pages):
            chunk = results[k * FOVS_PER_PAGE:(k + 1) * FOVS_PER_PAGE]
            plot_fov_traces(chunk, path, colors,
                            title=f"Traces of every FOV ({k + 1} of {len(pages)}): good cells in the "
                                  "sample's colour, cells marked bad in grey, median in black")
        if comparison:
            first = samples[samples["model"] == models[0]] if samples is not None else pd.DataFrame()
            plot_sample_comparison(first, comparison[0], colors)


run(main, snakemake)  # noqa: F821
