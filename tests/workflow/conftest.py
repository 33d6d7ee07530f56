import pytest

from support.pipeline import completed_tiny_run, results


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    """results/tiny of the tiny pipeline run that the workflow tests share (made once)."""
    return results(completed_tiny_run(tmp_path_factory))
