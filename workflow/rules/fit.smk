rule fit:
    input:
        unpack(fit_input),
    output:
        f"{RESULTS}/{{dataset}}/fov_{{fov}}/fits_{{model}}.csv",
    log:
        f"{RESULTS}/logs/{{dataset}}/fov_{{fov}}/fit_{{model}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/{{dataset}}/fov_{{fov}}/fit_{{model}}.tsv"
    priority: 10
    conda:
        "../../envs/fitting.yaml"
    threads: 1
    resources:
        mem_mb=lambda wc, attempt: 500 * attempt,
        runtime=lambda wc, attempt: 30 * attempt,
    params:
        overrides=lambda wc: config["fit"]["params"].get(wc.model, {}),
        value_col=lambda wc: f"{config['fit']['feature']}_ch_{fit_channel(wc.dataset)}",
        t0_bounds=config["fit"]["t0_bounds"],
        weighting=config["fit"]["weighting"],
        status={k: v for k, v in config["fit"]["status"].items() if k != "include"},
    script:
        "../../scripts/fit.py"


rule model_choice:
    input:
        lambda wc: [
            f"{fov_dir(wc.dataset, wc.fov)}/fits_{m}.csv"
            for m in config["fit"]["models"]
        ],
    output:
        f"{RESULTS}/{{dataset}}/fov_{{fov}}/model_choice.csv",
    log:
        f"{RESULTS}/logs/{{dataset}}/fov_{{fov}}/model_choice.log",
    benchmark:
        f"{RESULTS}/benchmarks/{{dataset}}/fov_{{fov}}/model_choice.tsv"
    priority: 10
    conda:
        "../../envs/fitting.yaml"
    threads: 1
    resources:
        mem_mb=lambda wc, attempt: 500 * attempt,
        runtime=lambda wc, attempt: 10 * attempt,
    script:
        "../../scripts/model_choice.py"


rule analysis:
    input:
        fits=lambda wc: [p for p, _s in analysis_fits(wc.model)],
        traces=lambda wc: [p for p, _s in analysis_traces()],
    output:
        **{name: f"{RESULTS}/analysis/{{model}}/{name}.csv" for name in ANALYSIS_TABLES},
        **{
            f"{name}_png": report(
                f"{RESULTS}/analysis/{{model}}/{name}.png",
                category="6 Fits and analysis",
                subcategory="all samples",
                caption=f"../report/analysis_{name}.rst",
                labels={"model": "{model}", "plot": name.replace("_", " ")},
            )
            for name in ANALYSIS_PLOTS
        },
    log:
        f"{RESULTS}/logs/analysis_{{model}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/analysis_{{model}}.tsv"
    priority: 10
    conda:
        "../../envs/fitting.yaml"
    threads: 1
    resources:
        mem_mb=lambda wc, attempt: 2000 * attempt,
        runtime=lambda wc, attempt: 20 * attempt,
    params:
        fit_samples=lambda wc: [s for _p, s in analysis_fits(wc.model)],
        trace_samples=[s for _p, s in analysis_traces()],
        include=config["fit"]["status"]["include"],
    script:
        "../../scripts/analysis.py"
