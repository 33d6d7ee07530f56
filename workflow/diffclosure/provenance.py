"""What made a file: package version, git commit, config hash, time."""

from __future__ import annotations

import datetime as _dt
import functools
import subprocess
from pathlib import Path

from diffclosure import __version__
from diffclosure.config import section_hash

REPO_ROOT = Path(__file__).resolve().parents[2]


@functools.cache
def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
        return out + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def provenance(cfg: dict, stage: str) -> dict:
    """Attributes stored in every output. `cfg` is the config part that determined it."""
    return {
        "diffclosure_version": __version__,
        "git_commit": git_commit(),
        "config_hash": section_hash(cfg),
        "stage": stage,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
