# diffclosure: learned stochastic closures for 2-D turbulence.
#   snakemake --cores all                       whole pipeline on config.yaml
#   snakemake --cores all --configfile workflow/presets/paper-H.yaml
# Stages: dns -> coarse -> dataset -> train -> distill -> sample_benchmark -> rollout -> report
import glob
import os
import sys

from snakemake.utils import min_version, validate

from diffclosure.config import SCHEMA_PATH, ConfigError, read_yaml
from diffclosure.config import validate as validate_config

min_version("8.0")

# Snakemake's message for a YAML syntax error names neither the file nor the line, so the
# default config is read by the package first. (Snakemake reads a --configfile before this file
# runs: `python -m diffclosure check-config FILE` names the line of an error there.)
try:
    read_yaml(os.path.join(workflow.basedir, "config.yaml"))
except ConfigError as exc:
    raise WorkflowError(str(exc)) from None


# The default config lives beside this Snakefile, so runs with --directory elsewhere still get
# it; --configfile and --config values are merged on top.
configfile: os.path.join(workflow.basedir, "config.yaml")


report: "workflow/report/workflow.rst"


# One schema for the pipeline and every stage run alone, the copy inside the package (so a
# workflow folder works with an installed wheel). The package's validator fills the defaults and
# names the offending field with the fix; Snakemake's validate then re-checks.
try:
    validate_config(config)
except ConfigError as exc:
    raise WorkflowError(str(exc)) from None
validate(config, str(SCHEMA_PATH))


# Two runs in one folder: the second one's first error is Snakemake's IncompleteFilesException
# (the first run's outputs in progress), whose advice, --rerun-incomplete, is wrong while that
# run goes on. A lock in .snakemake/locks is the sign; say what it means before that error.
if workflow.is_main_process and glob.glob(os.path.join(".snakemake", "locks", "*")):
    print(
        "NOTE: .snakemake/locks holds a lock: another Snakemake is running in this folder, or "
        "a killed one left it behind. If one is running, wait for it to finish (two runs in one "
        "folder would write the same files). If none is, `snakemake --unlock`, then rerun; use "
        "--rerun-incomplete only if Snakemake then asks for it.",
        file=sys.stderr,
    )


include: "workflow/rules/common.smk"
include: "workflow/rules/dns.smk"
include: "workflow/rules/coarse.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/distill.smk"
include: "workflow/rules/sampling.smk"
include: "workflow/rules/rollout.smk"
include: "workflow/rules/report.smk"


# Cheap aggregation runs where Snakemake runs, not as cluster jobs.
localrules:
    all,
    rollout_metrics,
    report,


rule all:
    input:
        all_outputs(rules),
    default_target: True


# A closure that blew up is a result, not a failure (the run exits 0 and the report marks it);
# this line makes sure it is not missed on the console.
onsuccess:
    from diffclosure.stages.report import blowup_warnings

    for line in blowup_warnings(OUT):
        print(line, file=sys.stderr)
