# pyama-flow: PyAMA's single-cell time-lapse pipeline, one rule per step per FOV.
#   snakemake --cores 2                                   # the built-in demo
#   snakemake --cores 8 --configfile config/exp.yaml      # a real experiment
#   snakemake --profile profiles/slurm --configfile config/exp.yaml

from snakemake.utils import min_version

min_version("9")


# the demo's config, unless the user gives one (--configfile is merged into
# this file's values otherwise, which would add the demo dataset to theirs)
if not config:

    configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/simulate.smk"
include: "workflow/rules/extract.smk"
include: "workflow/rules/segment.smk"
include: "workflow/rules/correct.smk"
include: "workflow/rules/track.smk"
include: "workflow/rules/traces.smk"
include: "workflow/rules/fit.smk"
include: "workflow/rules/merge.smk"
include: "workflow/rules/qc.smk"


rule all:
    default_target: True
    input:
        all_outputs(),
