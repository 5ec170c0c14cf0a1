"""`aisle consume` only moves events from the stream to the store: its start-up must not pay for the serving
runtime (the routes, the pipeline, torch: ~3 s of imports on this machine before they were kept apart)."""

from __future__ import annotations

import os
import subprocess
import sys


def test_the_consumer_process_imports_neither_the_runtime_nor_torch() -> None:
    code = ("import sys, aisle.cli\n"
            "from aisle.serve.sink import StoreSink\n"
            "from aisle.serve.stream import Consumer\n"
            "print(sorted(m for m in ('torch', 'aisle.pipeline', 'aisle.serve.runtime', 'fastapi') "
            "if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert out.stdout.strip() == "[]"
