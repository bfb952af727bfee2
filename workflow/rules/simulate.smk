if SIM is not None:

    rule simulate:
        output:
            tif=SIM["output"],
            truth=directory(SIM["truth"]),
        log:
            f"{RESULTS}/logs/simulate.log",
        benchmark:
            f"{RESULTS}/benchmarks/simulate.tsv"
        conda:
            "../../envs/io.yaml"
        threads: 1
        resources:
            mem_mb=500,
            runtime=10,
        params:
            sim={k: v for k, v in SIM.items() if k not in ("output", "truth")},
        script:
            "../../scripts/simulate.py"
