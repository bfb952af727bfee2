rule merge:
    input:
        unpack(sample_traces),
    output:
        f"{RESULTS}/samples/{{sample}}/{{sample}}_{{column}}.csv",
    log:
        f"{RESULTS}/logs/samples/{{sample}}/merge_{{column}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/samples/{{sample}}/merge_{{column}}.tsv"
    priority: 10
    conda:
        "../../envs/fitting.yaml"
    threads: 1
    resources:
        mem_mb=lambda wc, attempt: 1000 * attempt,
        runtime=lambda wc, attempt: 10 * attempt,
    script:
        "../../scripts/merge.py"


rule tidy:
    input:
        **all_traces_input(),
    output:
        f"{RESULTS}/all_traces.csv",
    log:
        f"{RESULTS}/logs/tidy.log",
    benchmark:
        f"{RESULTS}/benchmarks/tidy.tsv"
    priority: 10
    conda:
        "../../envs/fitting.yaml"
    threads: 1
    resources:
        mem_mb=lambda wc, attempt: 2000 * attempt,
        runtime=lambda wc, attempt: 20 * attempt,
    params:
        datasets_fovs=[[ds, f] for ds in config["datasets"] for f in fovs(ds)],
        sample_of=[[ds, f, name] for name, (ds, sel) in samples().items() for f in sel],
        channel_names={
            ds: list(dataset_info(ds)["channels"]) for ds in config["datasets"]
        },
    script:
        "../../scripts/tidy.py"
