"""Run the `aisle` CLI while recording, per rank, every folder made and file written under one folder.

`python audit_writes.py WATCH LOG aisle-args...`: writes LOG.<RANK>.json (a list of [event, path]) at exit.
Python's audit hooks (PEP 578) see `os.mkdir`, `open` for writing and `os.rename`/`os.replace` from any library
that goes through Python's I/O, which is how the bundle's folders, JSON and NumPy files are written.
"""

from __future__ import annotations

import atexit
import json
import os
import sys
from pathlib import Path
from typing import Any

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND


def main() -> None:
    watch, log, args = str(Path(sys.argv[1]).absolute()), Path(sys.argv[2]), sys.argv[3:]
    rank = os.environ.get("RANK", "0")
    seen: list[list[str]] = []

    def under(path: Any) -> str | None:
        if not isinstance(path, str | bytes | os.PathLike):
            return None
        full = str(Path(os.fsdecode(path)).absolute())
        return full if full == watch or full.startswith(watch + os.sep) else None

    def hook(event: str, hook_args: tuple[Any, ...]) -> None:
        if event == "os.mkdir" or event in ("os.rename", "os.replace"):
            targets = hook_args[:1] if event == "os.mkdir" else hook_args[1:2]
        elif event == "open":
            path, mode, flags = hook_args
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or bool((flags or 0) & WRITE_FLAGS)
            targets = (path,) if writing else ()
        else:
            return
        for target in targets:
            if (full := under(target)) is not None:
                seen.append([event, full])

    def dump() -> None:
        log.with_name(f"{log.name}.{rank}.json").write_text(json.dumps(seen))

    atexit.register(dump)
    sys.addaudithook(hook)
    sys.argv = ["aisle", *args]
    from aisle.cli import main as aisle_main

    aisle_main()


if __name__ == "__main__":
    main()
