"""A throwaway PostgreSQL server for tests: initdb + pg_ctl in a temporary folder on a free 127.0.0.1 port.

Run as the `postgres` system user when the tests run as root (the server refuses root). Skips with a reason when
the PostgreSQL server binaries are absent (`apt-get install postgresql`; `.ci/run` installs it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.redisserver import free_port


def _bin_dir() -> Path | None:
    """The folder of initdb and pg_ctl: $AISLE_PG_BIN, else PATH, else Debian's /usr/lib/postgresql/N/bin."""
    candidates = [Path(os.environ["AISLE_PG_BIN"])] if os.environ.get("AISLE_PG_BIN") else []
    if shutil.which("pg_ctl"):
        candidates.append(Path(shutil.which("pg_ctl") or "").parent)
    candidates += [p.parent for p in sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
                                            key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0,
                                            reverse=True)]
    return next((c for c in candidates if (c / "initdb").exists() and (c / "pg_ctl").exists()), None)



@contextmanager
def postgres_server(settings: dict[str, str] | None = None) -> Iterator[str]:
    """Start a server, yield its URL (superuser `aisle`, database `postgres`, trust auth), stop and delete it.
    `settings`: more server settings (`{"shared_buffers": "1GB"}`; a benchmark's operator-tuned server)."""
    bindir = _bin_dir()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are absent (apt-get install postgresql; .ci/run "
                    "installs it)")
    prefix: list[str] = []
    root = Path(tempfile.mkdtemp(prefix="aisle-pg-", dir="/tmp"))
    if os.geteuid() == 0:  # postgres refuses to run as root: run it as the package's system user
        try:
            import pwd

            pw = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no `postgres` system user to run the test server as")
        os.chown(root, pw.pw_uid, pw.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    data, port = root / "data", free_port()
    env = {**os.environ, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}
    subprocess.run([*prefix, str(bindir / "initdb"), "-D", str(data), "-U", "aisle", "--auth=trust", "-E", "UTF8",
                    "--no-sync"], check=True, capture_output=True, env=env)
    opts = f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off -c synchronous_commit=off " \
           "-c full_page_writes=off" + "".join(f" -c {k}={v}" for k, v in (settings or {}).items())
    subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(root / "log"), "-w",
                    "-t", "60", "start"], check=True, capture_output=True, env=env)
    try:
        yield f"postgresql://aisle@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                       capture_output=True, env=env)
        shutil.rmtree(root, ignore_errors=True)


def fresh_database(server_url: str, name: str) -> str:
    """Create an empty database `name` on the server and return its URL."""
    import psycopg

    with psycopg.connect(server_url, autocommit=True) as con:
        con.execute(f'DROP DATABASE IF EXISTS "{name}"')
        con.execute(f'CREATE DATABASE "{name}"')
    return server_url.rsplit("/", 1)[0] + f"/{name}"
