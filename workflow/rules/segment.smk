def segmentation_params(wc):
    method = config["segmentation"]["method"]
    return dict(config["segmentation"].get(method, {}))


rule segment:
    input:
        lambda wc: f"{fov_dir(wc.dataset, wc.fov)}/raw_ch{channels(wc.dataset)[0]}.tif",
    output:
        f"{RESULTS}/{{dataset}}/fov_{{fov}}/segmentation.tif",
    params:
        method=config["segmentation"]["method"],
        options=segmentation_params,
    log:
        f"{RESULTS}/logs/{{dataset}}/fov_{{fov}}/segment.log",
    benchmark:
        f"{RESULTS}/benchmarks/{{dataset}}/fov_{{fov}}/segment.tsv"
    threads: 1
    resources:
        mem_mb=lambda wc, attempt: 600 * attempt,
        runtime=lambda wc, attempt: 30 * attempt,
    conda:
        "../../envs/imaging.yaml"
    script:
        "../../scripts/segment.py"
