rule track:
    input:
        f"{RESULTS}/{{dataset}}/fov_{{fov}}/segmentation.tif",
    output:
        labels=f"{RESULTS}/{{dataset}}/fov_{{fov}}/labels.tif",
        lineage=f"{RESULTS}/{{dataset}}/fov_{{fov}}/tracks.csv",
    log:
        f"{RESULTS}/logs/{{dataset}}/fov_{{fov}}/track.log",
    benchmark:
        f"{RESULTS}/benchmarks/{{dataset}}/fov_{{fov}}/track.tsv"
    priority: 10
    conda:
        "../../envs/imaging.yaml"
    threads: 1
    resources:
        mem_mb=lambda wc, attempt: 600 * attempt,
        runtime=lambda wc, attempt: 30 * attempt,
    params:
        tracking=dict(config["tracking"]),
        compression=config["storage"]["compression"],
    script:
        "../../scripts/track.py"
