rule traces:
    input:
        unpack(traces_input),
    output:
        traces=f"{RESULTS}/{{dataset}}/fov_{{fov}}/traces.csv",
        stats=f"{RESULTS}/{{dataset}}/fov_{{fov}}/trace_stats.json",
    log:
        f"{RESULTS}/logs/{{dataset}}/fov_{{fov}}/traces.log",
    benchmark:
        f"{RESULTS}/benchmarks/{{dataset}}/fov_{{fov}}/traces.tsv"
    priority: 10
    conda:
        "../../envs/imaging.yaml"
    threads: 1
    resources:
        mem_mb=lambda wc, attempt: 800 * attempt,
        runtime=lambda wc, attempt: 30 * attempt,
    params:
        channels=lambda wc: channels(wc.dataset)[1],
        pc_channel=lambda wc: channels(wc.dataset)[0],
        background_weight=config["traces"]["background_weight"],
        expand_px=expand_px(),
        min_frames=config["traces"]["min_frames"],
        border=config["traces"]["border"],
        lineage=config["traces"]["lineage"],
    script:
        "../../scripts/traces.py"
