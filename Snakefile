# diffclosure: learned stochastic closures for 2-D turbulence.
#   snakemake --cores all                       whole pipeline on config.yaml
#   snakemake --cores all --configfile workflow/presets/paper-H.yaml
# Stages: dns -> coarse -> dataset -> train -> distill -> sample_benchmark -> rollout -> report
import os

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
        all_outputs(),
    default_target: True
