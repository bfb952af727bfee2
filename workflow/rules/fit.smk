rule fit:
    input:
        fit_input,
    output:
        f"{RESULTS}/{{dataset}}/fov_{{fov}}/fits_{{model}}.csv",
    log:
        f"{RESULTS}/logs/{{dataset}}/fov_{{fov}}/fit_{{model}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/{{dataset}}/fov_{{fov}}/fit_{{model}}.tsv"
    conda:
        "../../envs/fitting.yaml"
    threads: 1
    resources:
        mem_mb=lambda wc, attempt: 500 * attempt,
        runtime=lambda wc, attempt: 30 * attempt,
    params:
        overrides=lambda wc: config["fit"]["params"].get(wc.model, {}),
        value_col=lambda wc: f"{config['fit']['feature']}_ch_{fit_channel(wc.dataset)}",
    script:
        "../../scripts/fit.py"
