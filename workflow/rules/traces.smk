def traces_input(wc):
    d = fov_dir(wc.dataset, wc.fov)
    _pc, fl = channels(wc.dataset)
    return {
        "labels": f"{d}/labels.tif",
        "lineage": f"{d}/tracks.csv",
        "metadata": f"{RESULTS}/{wc.dataset}/metadata.json",
        "raw": [f"{d}/raw_ch{c}.tif" for c in fl],
        "background": [f"{d}/background_ch{c}.npz" for c in fl],
    }


rule traces:
    input:
        unpack(traces_input),
    output:
        traces=f"{RESULTS}/{{dataset}}/fov_{{fov}}/traces.csv",
        stats=f"{RESULTS}/{{dataset}}/fov_{{fov}}/trace_stats.json",
    params:
        channels=lambda wc: channels(wc.dataset)[1],
        pc_channel=lambda wc: channels(wc.dataset)[0],
        background_weight=config["traces"]["background_weight"],
        min_frames=config["traces"]["min_frames"],
        border=config["traces"]["border"],
        parent=config["traces"]["parent"],
    log:
        f"{RESULTS}/logs/{{dataset}}/fov_{{fov}}/traces.log",
    benchmark:
        f"{RESULTS}/benchmarks/{{dataset}}/fov_{{fov}}/traces.tsv"
    threads: 1
    resources:
        mem_mb=lambda wc, attempt: 800 * attempt,
        runtime=lambda wc, attempt: 30 * attempt,
    conda:
        "../../envs/imaging.yaml"
    script:
        "../../scripts/traces.py"
