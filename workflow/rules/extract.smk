rule metadata:
    input:
        dataset_input,
    output:
        f"{RESULTS}/{{dataset}}/metadata.json",
    log:
        f"{RESULTS}/logs/{{dataset}}/metadata.log",
    benchmark:
        f"{RESULTS}/benchmarks/{{dataset}}/metadata.tsv"
    priority: 10
    conda:
        "../../envs/io.yaml"
    threads: 1
    resources:
        mem_mb=300,
        runtime=5,
    params:
        reader=lambda wc: config["datasets"][wc.dataset].get("reader", {}),
        frame_interval_min=lambda wc: frame_interval(wc.dataset),
        fingerprint=dataset_fingerprint,
    script:
        "../../scripts/metadata.py"


rule extract:
    input:
        dataset_input,
    output:
        raw=raw_output(f"{RESULTS}/{{dataset}}/fov_{{fov}}/raw_ch{{c}}.{RAW_SUFFIX}"),
        stats=f"{RESULTS}/{{dataset}}/fov_{{fov}}/frame_stats_ch{{c}}.csv",
    log:
        f"{RESULTS}/logs/{{dataset}}/fov_{{fov}}/extract_ch{{c}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/{{dataset}}/fov_{{fov}}/extract_ch{{c}}.tsv"
    priority: 10
    conda:
        "../../envs/io.yaml"
    threads: 1
    resources:
        mem_mb=lambda wc, attempt: 400 * attempt,
        runtime=lambda wc, attempt: 30 * attempt,
    params:
        reader=lambda wc: config["datasets"][wc.dataset].get("reader", {}),
        z=lambda wc: config["datasets"][wc.dataset]["z"],
        compression=raw_compression(),
        fingerprint=dataset_fingerprint,
    script:
        "../../scripts/extract.py"
