rule segment:
    input:
        unpack(segment_input),
    output:
        f"{RESULTS}/{{dataset}}/fov_{{fov}}/segmentation.tif",
    log:
        f"{RESULTS}/logs/{{dataset}}/fov_{{fov}}/segment.log",
    benchmark:
        f"{RESULTS}/benchmarks/{{dataset}}/fov_{{fov}}/segment.tsv"
    priority: 10
    conda:
        "../../envs/imaging.yaml"
    threads: 1
    resources:
        mem_mb=lambda wc, attempt: 600 * attempt,
        runtime=lambda wc, attempt: 30 * attempt,
    params:
        method=config["segmentation"]["method"],
        options=segmentation_params,
        compression=config["storage"]["compression"],
    script:
        "../../scripts/segment.py"
