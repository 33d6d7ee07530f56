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
