"""The suite's own scheduling: `--dist loadgroup` (pyproject's addopts) keeps an `xdist_group` on one worker.

Why a test: the compose fleet (tests/integration/test_fleet.py) and the browser tests (tests/e2e) share one
expensive module or session fixture per group. With pytest 9.2 and pytest-xdist 3.8 the group suffix xdist adds to
each node id is ignored, the groups were split over both workers, and each worker built its own fleet (~260 s of
setup twice, both cores at once). A version bump that breaks it again fails here, not as a slower suite."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

GROUPED = '''
import os
import pytest

pytestmark = pytest.mark.xdist_group("one")


@pytest.mark.parametrize("n", range(6))
def test_grouped(n):
    print(f"PID {os.getpid()}")
'''


def test_a_group_runs_in_one_worker(tmp_path: Path) -> None:
    (tmp_path / "test_grouped.py").write_text(GROUPED)
    (tmp_path / "pytest.ini").write_text("[pytest]\naddopts = --dist loadgroup\n")
    run = subprocess.run([sys.executable, "-m", "pytest", "-n", "2", "-p", "no:cacheprovider", "-rA", "-q",
                          str(tmp_path)], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    pids = {line.split()[1] for line in run.stdout.splitlines() if line.startswith("PID ")}
    assert run.stdout.count("PID ") == 6 and len(pids) == 1, run.stdout[-2000:]
