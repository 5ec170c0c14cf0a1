"""Two gloo processes under torchrun reach the same validation NDCG@10 as one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.redisserver import free_port

WORKER = Path(__file__).parent / "ddp" / "worker.py"
TOLERANCE = 0.03  # absolute NDCG@10: the two runs see the same data in a different order


def _run(args: list[str], out: Path) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path),
           "TMPDIR": str(out.parent)}  # torchrun's torchelastic_* folders stay in the test's own
    done = subprocess.run(args, env=env, timeout=300, capture_output=True, text=True)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    return json.loads(out.read_text())


@pytest.mark.slow
def test_two_gloo_processes_match_one(tmp_path: Path) -> None:
    single = _run([sys.executable, str(WORKER), str(tmp_path / "one.json")], tmp_path / "one.json")
    # the rendezvous on a port below the kernel's ephemeral range (`--standalone` binds port 0, which another
    # test's outgoing connection can take between torchrun's pick and its bind)
    double = _run([sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2",
                   "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{free_port()}",
                   str(WORKER), str(tmp_path / "two.json")], tmp_path / "two.json")
    assert single["world_size"] == 1 and double["world_size"] == 2
    assert single["best"] > 0.3, single  # it learned the planted chains (chance is ~0.07)
    assert abs(single["best"] - double["best"]) <= TOLERANCE, (single["best"], double["best"])
