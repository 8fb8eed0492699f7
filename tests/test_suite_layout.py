"""The parallel layout ``make test`` relies on: ``--dist loadgroup`` keeps an ``xdist_group`` on one worker.

test_parallel, test_reliability and test_faults mark their modules with ``xdist_group`` so that their expensive
module fixtures (a multi-device job, training runs) run once rather than once per worker. pytest 9.2 with
pytest-xdist 3.8 silently drops the grouping (pytest-dev/pytest-xdist#1386); the suite still passes then, only
slower, so this test is what notices.
"""

import os
import subprocess
import sys
import textwrap

GROUPED_MODULE = textwrap.dedent(
    """
    import os
    import pytest

    pytestmark = pytest.mark.xdist_group("together")

    @pytest.fixture(scope="module")
    def expensive():
        with open(os.environ["FIXTURE_LOG"], "a") as log:
            log.write(f"{os.getpid()}\\n")

    @pytest.mark.parametrize("i", range(6))
    def test_uses_fixture(expensive, i):
        pass
    """
)


def test_loadgroup_runs_a_grouped_module_fixture_once(tmp_path):
    (tmp_path / "test_grouped.py").write_text(GROUPED_MODULE)
    log = tmp_path / "fixture.log"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "2", "--dist", "loadgroup", str(tmp_path)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path, env={**os.environ, "FIXTURE_LOG": str(log)},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(log.read_text().split()) == 1, f"the module fixture ran on several workers:\n{log.read_text()}"

