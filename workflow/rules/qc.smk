# Quality control: pictures and tables for `snakemake --report report.html`.
# Cheap by construction: each rule reads only the frames it shows (first,
# middle, last); the per-frame statistics come from the extract step.
# Report: one category per stage, one subcategory per sample (FOVs in no
# sample: "<dataset> (no sample)"), one row per FOV (and channel).

QC_FOV = f"{RESULTS}/{{dataset}}/fov_{{fov}}"


rule qc_frames:
    input:
        raw=qc_raw_input,
        metadata=f"{RESULTS}/{{dataset}}/metadata.json",
    output:
        report(
            f"{QC_FOV}/qc/frames.png",
            category="1 Raw frames",
            subcategory=qc_subcategory,
            caption="../report/frames.rst",
            labels=lambda wc: {"FOV": wc.fov},
        ),
    log:
        f"{RESULTS}/logs/{{dataset}}/fov_{{fov}}/qc_frames.log",
    benchmark:
        f"{RESULTS}/benchmarks/{{dataset}}/fov_{{fov}}/qc_frames.tsv"
    conda:
        "../../envs/fitting.yaml"
    threads: 1
    resources:
        mem_mb=lambda wc, attempt: 800 * attempt,
        runtime=lambda wc, attempt: 10 * attempt,
    params:
        channels=lambda wc: qc_channels(wc.dataset),
        phase=lambda wc: channels(wc.dataset)[0],
        sample=lambda wc: fov_sample(wc.dataset, wc.fov),
        color=lambda wc: fov_color(wc.dataset, wc.fov),
    script:
        "../../scripts/qc_frames.py"


rule qc_frame_stats:
    input:
        stats=f"{QC_FOV}/frame_stats_ch{{c}}.csv",
        metadata=f"{RESULTS}/{{dataset}}/metadata.json",
    output:
        plot=report(
            f"{QC_FOV}/qc/frame_stats_ch{{c}}.png",
            category="2 Frame statistics",
            subcategory=qc_subcategory,
            caption="../report/frame_stats.rst",
            labels=lambda wc: {
                "FOV": wc.fov,
                "channel": qc_channel_label(wc.dataset, wc.c),
                "view": "plot",
            },
        ),
        table=report(
            f"{QC_FOV}/qc/frame_stats_ch{{c}}.html",
            category="2 Frame statistics",
            subcategory=qc_subcategory,
            caption="../report/frame_stats_table.rst",
            labels=lambda wc: {
                "FOV": wc.fov,
                "channel": qc_channel_label(wc.dataset, wc.c),
                "view": "table",
            },
        ),
    log:
        f"{RESULTS}/logs/{{dataset}}/fov_{{fov}}/qc_frame_stats_ch{{c}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/{{dataset}}/fov_{{fov}}/qc_frame_stats_ch{{c}}.tsv"
    conda:
        "../../envs/fitting.yaml"
    threads: 1
    resources:
        mem_mb=lambda wc, attempt: 400 * attempt,
        runtime=lambda wc, attempt: 5 * attempt,
    params:
        channel=lambda wc: qc_channel_label(wc.dataset, wc.c),
        phase=lambda wc: int(wc.c) == channels(wc.dataset)[0],
        sample=lambda wc: fov_sample(wc.dataset, wc.fov),
        color=lambda wc: fov_color(wc.dataset, wc.fov),
    script:
        "../../scripts/qc_frame_stats.py"


rule qc_outlines:
    input:
        phase=qc_phase_input,
        labels=f"{QC_FOV}/labels.tif",
        metadata=f"{RESULTS}/{{dataset}}/metadata.json",
    output:
        report(
            f"{QC_FOV}/qc/outlines.png",
            category="3 Segmentation and tracking",
            subcategory=qc_subcategory,
            caption="../report/outlines.rst",
            labels=lambda wc: {"FOV": wc.fov},
        ),
    log:
        f"{RESULTS}/logs/{{dataset}}/fov_{{fov}}/qc_outlines.log",
    benchmark:
        f"{RESULTS}/benchmarks/{{dataset}}/fov_{{fov}}/qc_outlines.tsv"
    conda:
        "../../envs/fitting.yaml"
    threads: 1
    resources:
        mem_mb=lambda wc, attempt: 800 * attempt,
        runtime=lambda wc, attempt: 10 * attempt,
    params:
        sample=lambda wc: fov_sample(wc.dataset, wc.fov),
        color=lambda wc: fov_color(wc.dataset, wc.fov),
    script:
        "../../scripts/qc_outlines.py"


rule qc_background:
    input:
        raw=f"{QC_FOV}/raw_ch{{c}}.{RAW_SUFFIX}",
        background=f"{QC_FOV}/background_ch{{c}}.npz",
        metadata=f"{RESULTS}/{{dataset}}/metadata.json",
    output:
        report(
            f"{QC_FOV}/qc/background_ch{{c}}.png",
            category="4 Background",
            subcategory=qc_subcategory,
            caption="../report/background.rst",
            labels=lambda wc: {
                "FOV": wc.fov,
                "channel": qc_channel_label(wc.dataset, wc.c),
            },
        ),
    log:
        f"{RESULTS}/logs/{{dataset}}/fov_{{fov}}/qc_background_ch{{c}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/{{dataset}}/fov_{{fov}}/qc_background_ch{{c}}.tsv"
    conda:
        "../../envs/fitting.yaml"
    threads: 1
    resources:
        mem_mb=lambda wc, attempt: 800 * attempt,
        runtime=lambda wc, attempt: 10 * attempt,
    params:
        channel=lambda wc: qc_channel_label(wc.dataset, wc.c),
        sample=lambda wc: fov_sample(wc.dataset, wc.fov),
        color=lambda wc: fov_color(wc.dataset, wc.fov),
    script:
        "../../scripts/qc_background.py"


rule qc_cells:
    input:
        trace_stats=f"{QC_FOV}/trace_stats.json",
        tracks=f"{QC_FOV}/tracks.csv",
        traces=f"{QC_FOV}/traces.csv",
        metadata=f"{RESULTS}/{{dataset}}/metadata.json",
        # the decisions log: a decision redraws the figure's curation line
        curation=lambda wc: curation_file(wc.dataset, wc.fov),
    output:
        report(
            f"{QC_FOV}/qc/cells.png",
            category="5 Cells and filters",
            subcategory=qc_subcategory,
            caption="../report/cells.rst",
            labels=lambda wc: {"FOV": wc.fov},
        ),
    log:
        f"{RESULTS}/logs/{{dataset}}/fov_{{fov}}/qc_cells.log",
    benchmark:
        f"{RESULTS}/benchmarks/{{dataset}}/fov_{{fov}}/qc_cells.tsv"
    conda:
        "../../envs/fitting.yaml"
    threads: 1
    resources:
        mem_mb=lambda wc, attempt: 500 * attempt,
        runtime=lambda wc, attempt: 5 * attempt,
    params:
        sample=lambda wc: fov_sample(wc.dataset, wc.fov),
        color=lambda wc: fov_color(wc.dataset, wc.fov),
    script:
        "../../scripts/qc_cells.py"


QC_SAMPLE = f"{RESULTS}/samples/{{sample}}/qc"


rule qc_sample:
    input:
        fits=sample_fits,
        traces=sample_fit_traces,
    output:
        parameters=report(
            f"{QC_SAMPLE}/{{model}}_parameters.png",
            category="6 Fits and analysis",
            subcategory="{sample}",
            caption="../report/sample_parameters.rst",
            labels={"model": "{model}", "plot": "parameter distributions"},
        ),
        r_squared=report(
            f"{QC_SAMPLE}/{{model}}_r_squared.png",
            category="6 Fits and analysis",
            subcategory="{sample}",
            caption="../report/sample_r_squared.rst",
            labels={"model": "{model}", "plot": "R² histogram"},
        ),
        examples=report(
            f"{QC_SAMPLE}/{{model}}_examples.png",
            category="6 Fits and analysis",
            subcategory="{sample}",
            caption="../report/sample_examples.rst",
            labels={"model": "{model}", "plot": "example cells"},
        ),
        median_trace=report(
            f"{QC_SAMPLE}/{{model}}_median_trace.png",
            category="6 Fits and analysis",
            subcategory="{sample}",
            caption="../report/sample_median_trace.rst",
            labels={"model": "{model}", "plot": "median trace"},
        ),
        pca=report(
            f"{QC_SAMPLE}/{{model}}_pca.png",
            category="6 Fits and analysis",
            subcategory="{sample}",
            caption="../report/sample_pca.rst",
            labels={"model": "{model}", "plot": "PCA"},
        ),
        summary=f"{QC_SAMPLE}/{{model}}_summary.csv",
    log:
        f"{RESULTS}/logs/samples/{{sample}}/qc_sample_{{model}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/samples/{{sample}}/qc_sample_{{model}}.tsv"
    priority: 10
    conda:
        "../../envs/fitting.yaml"
    threads: 1
    resources:
        mem_mb=lambda wc, attempt: 1000 * attempt,
        runtime=lambda wc, attempt: 10 * attempt,
    params:
        color=lambda wc: sample_color_of(wc.sample),
        include=config["fit"]["status"]["include"],
    script:
        "../../scripts/qc_sample.py"


rule qc_overview:
    input:
        unpack(overview_input),
    output:
        html=report(
            f"{RESULTS}/qc/overview/overview.html",
            category="0 Overview",
            subcategory="every FOV and sample",
            caption="../report/overview.rst",
            labels={"page": "tables: every FOV, every sample"},
        ),
        fovs=report(
            f"{RESULTS}/qc/overview/fovs.csv",
            category="0 Overview",
            subcategory="every FOV and sample",
            caption="../report/overview_fovs.rst",
            labels={"page": "fovs.csv (download)"},
        ),
        samples_csv=report(
            f"{RESULTS}/qc/overview/samples.csv",
            category="0 Overview",
            subcategory="every FOV and sample",
            caption="../report/overview_samples_csv.rst",
            labels={"page": "samples.csv (download)"},
        ),
        traces=[
            report(
                f"{RESULTS}/qc/overview/traces_{p}.png",
                category="0 Overview",
                subcategory="every FOV and sample",
                caption="../report/overview_traces.rst",
                labels={"page": f"traces of every FOV ({p + 1})"},
            )
            for p in overview_pages()
        ],
        comparison=(
            [
                report(
                    f"{RESULTS}/qc/overview/samples.png",
                    category="0 Overview",
                    subcategory="every FOV and sample",
                    caption="../report/overview_samples.rst",
                    labels={"page": "samples compared"},
                )
            ]
            if samples()
            else []
        ),
    log:
        f"{RESULTS}/logs/qc_overview.log",
    benchmark:
        f"{RESULTS}/benchmarks/qc_overview.tsv"
    priority: 10
    conda:
        "../../envs/fitting.yaml"
    threads: 1
    resources:
        mem_mb=lambda wc, attempt: 1500 * attempt,
        runtime=lambda wc, attempt: 20 * attempt,
    params:
        fovs=overview_fovs(),
        models=config["fit"]["models"],
        # only the models run: an edit for another model reruns nothing
        overrides={
            m: config["fit"]["params"].get(m, {}) for m in config["fit"]["models"]
        },
        value_cols={
            ds: f"{config['fit']['feature']}_ch_{fit_channel(ds)}"
            for ds in config["datasets"]
        },
        n_fluorescence={ds: len(channels(ds)[1]) for ds in config["datasets"]},
        colors={name: sample_color_of(name) for name in samples()},
    script:
        "../../scripts/qc_overview.py"


rule qc_config:
    output:
        report(
            f"{RESULTS}/qc/config.html",
            category="7 Parameters",
            subcategory="configuration",
            caption="../report/config.rst",
            labels={"table": "effective configuration"},
        ),
    log:
        f"{RESULTS}/logs/qc_config.log",
    benchmark:
        f"{RESULTS}/benchmarks/qc_config.tsv"
    localrule: True
    conda:
        "../../envs/fitting.yaml"
    threads: 1
    resources:
        mem_mb=lambda wc, attempt: 200 * attempt,
        runtime=lambda wc, attempt: 2 * attempt,
    params:
        config=config,
    script:
        "../../scripts/qc_config.py"
