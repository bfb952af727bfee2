if SIM is not None:

    rule simulate:
        output:
            tif=SIM["output"],
            truth=directory(SIM["truth"]),
        params:
            sim={k: v for k, v in SIM.items() if k not in ("output", "truth")},
        log:
            f"{RESULTS}/logs/simulate.log",
        benchmark:
            f"{RESULTS}/benchmarks/simulate.tsv"
        threads: 1
        resources:
            mem_mb=500,
            runtime=10,
        conda:
            "../../envs/io.yaml"
        script:
            "../../scripts/simulate.py"
