rule correct:
    input:
        raw=f"{RESULTS}/{{dataset}}/fov_{{fov}}/raw_ch{{c}}.{RAW_SUFFIX}",
        seg=f"{RESULTS}/{{dataset}}/fov_{{fov}}/segmentation.tif",
    output:
        f"{RESULTS}/{{dataset}}/fov_{{fov}}/background_ch{{c}}.npz",
    log:
        f"{RESULTS}/logs/{{dataset}}/fov_{{fov}}/correct_ch{{c}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/{{dataset}}/fov_{{fov}}/correct_ch{{c}}.tsv"
    priority: 10
    conda:
        "../../envs/imaging.yaml"
    threads: 1
    resources:
        mem_mb=lambda wc, attempt: 600 * attempt,
        runtime=lambda wc, attempt: 30 * attempt,
    params:
        tile_size=config["background"]["tile_size"],
        dilation=config["background"]["dilation"],
        expand_px=expand_px(),
    script:
        "../../scripts/correct.py"
