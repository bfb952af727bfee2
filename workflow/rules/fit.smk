def fit_input(wc):
    """The user-curated traces (PyAMA's *_inspected.csv) when present, else the raw ones."""
    d = fov_dir(wc.dataset, wc.fov)
    inspected = Path(f"{d}/traces_inspected.csv")
    return str(inspected) if inspected.exists() else f"{d}/traces.csv"


rule fit:
    input:
        fit_input,
    output:
        f"{RESULTS}/{{dataset}}/fov_{{fov}}/fits_{{model}}.csv",
    params:
        overrides=lambda wc: config["fit"]["params"].get(wc.model, {}),
        value_col=lambda wc: f"{config['fit']['feature']}_ch_{fit_channel(wc.dataset)}",
    log:
        f"{RESULTS}/logs/{{dataset}}/fov_{{fov}}/fit_{{model}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/{{dataset}}/fov_{{fov}}/fit_{{model}}.tsv"
    threads: 1
    resources:
        mem_mb=lambda wc, attempt: 500 * attempt,
        runtime=lambda wc, attempt: 30 * attempt,
    conda:
        "../../envs/fitting.yaml"
    script:
        "../../scripts/fit.py"
