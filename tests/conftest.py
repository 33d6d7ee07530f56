import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow"))
os.environ.setdefault("MPLBACKEND", "Agg")
# Keep pyfftw wisdom of the tests away from the user's cache.
os.environ.setdefault("DIFFCLOSURE_FFTW_WISDOM", str(ROOT / ".pytest_cache" / "fftw-wisdom.pickle"))


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


def pytest_collection_modifyitems(config, items):
    """The SLURM tests are slow too, so the quick tier (-m "not slow") never starts a cluster."""
    for item in items:
        if item.get_closest_marker("slurm"):
            item.add_marker(pytest.mark.slow)
