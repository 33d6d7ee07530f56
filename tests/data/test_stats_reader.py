"""stats.json is read without torch (data.stats): the rollout modules that read it import no
torch for it. Checked in a fresh interpreter, where sys.modules shows what an import pulled in."""

import os
import subprocess
import sys
from pathlib import Path

from support.datasets import write_stats

WORKFLOW = Path(__file__).resolve().parents[2] / "workflow"

PROBE = """
import sys
from diffclosure.data.stats import load_stats
import diffclosure.rollout.coupled, diffclosure.stages.rollout
stats = load_stats(sys.argv[1])
print(stats["target"]["std"], "torch" in sys.modules)
import diffclosure.data.datasets
print("torch" in sys.modules)
"""


def test_stats_reader_and_rollout_modules_import_no_torch(tmp_path):
    write_stats(tmp_path, {"target": {"mean": 1.0, "std": 2.5}})
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(WORKFLOW), *filter(None, [os.environ.get("PYTHONPATH")])])}
    out = subprocess.run([sys.executable, "-c", PROBE, str(tmp_path)], capture_output=True,
                         text=True, env=env, check=True).stdout.split()
    assert out[:2] == ["2.5", "False"], out
    # The probe is not blind: the torch datasets module does show up as importing torch.
    assert out[2] == "True"
