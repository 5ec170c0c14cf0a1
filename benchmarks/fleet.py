"""The fleet benchmark: image size, throughput and p99 through the load balancer with 2 API replicas against 1 on
the same machine in the same run, and the cold start of a replica (container start to `/ready`).

    .venv/bin/python benchmarks/fleet.py --seconds 20 --connections 32

Builds the images as the fleet test does (tests/dockerhost.py: the base from Debian packages), brings up
compose.yaml (the init job trains the synthetic store's bundle), then runs the closed loop of benchmarks/load.py
(each connection sends its next GET /users/{known user}/recommendations?k=10 when the previous answer arrived)
against nginx's port: 2 replicas, then 1 (nginx reloaded without the second), then 2 again, so a drift of the
machine shows as a difference between the two 2-replica rounds. Cold start: `docker run` of one more replica on
the fleet's network and volume, timed from the command to its first 200 on `/ready` (published on 127.0.0.1).
`compose down -v` at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import subprocess
import sys
import time
import urllib.parse
import uuid
from pathlib import Path
from typing import Any

import httpx

import machine
from load import ClosedLoop

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.dockerhost import VERSION, Fleet, build_env, build_images, docker_unavailable, fleet_up, image_size
from tests.redisserver import free_port


def closed(port: int, connections: int, seconds: float, users: list[str]) -> dict[str, Any]:
    rng = random.Random(0)
    requests = [f"GET /users/{urllib.parse.quote(u)}/recommendations?k=10 HTTP/1.1\r\nHost: bench\r\n\r\n".encode()
                for u in (rng.choice(users) for _ in range(20_000))]
    return asyncio.run(ClosedLoop(port, requests, connections, 2.0, seconds).run())


def wait_ready(url: str, seconds: float = 300) -> float:
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        try:
            if httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                return time.monotonic() - start
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise SystemExit(f"{url} not ready after {seconds} s")


def lb_upstreams(fleet: Fleet, keep: str) -> None:
    """Rewrite nginx's upstream list to the replicas in `keep` (a regex of server lines) and reload it."""
    lb = fleet.container("lb")
    subprocess.run(["docker", "exec", "-u", "0", lb, "sh", "-c",
                    "cp -n /etc/nginx/nginx.conf /etc/nginx/nginx.conf.all && "
                    f"awk '!/server api-[0-9]+:8000/ || /{keep}/' /etc/nginx/nginx.conf.all > /etc/nginx/nginx.conf"],
                   check=True)
    subprocess.run(["docker", "exec", lb, "nginx", "-s", "reload"], check=True)
    time.sleep(2)  # the old nginx workers finish their connections


def cold_start(fleet: Fleet, runs: int) -> list[float]:
    """Seconds from `docker run` of a new replica to its first 200 on /ready."""
    api = fleet.container("api-1")
    inspect = json.loads(subprocess.run(["docker", "inspect", api], capture_output=True, text=True,
                                        check=True).stdout)[0]
    network = next(iter(inspect["NetworkSettings"]["Networks"]))
    env = [e for e in inspect["Config"]["Env"] if e.startswith(("AISLE_", "PGPASSWORD="))]
    out = []
    for _ in range(runs):
        port = free_port()
        name = f"{fleet.project}-cold-{uuid.uuid4().hex[:6]}"
        cmd = ["docker", "run", "-d", "--rm", "--name", name, "--network", network, "-p", f"127.0.0.1:{port}:8000",
               "-v", f"{fleet.project}_bundle:/bundle:ro"]
        for e in env:
            cmd += ["-e", e]
        start = time.monotonic()
        subprocess.run([*cmd, f"aisle:{VERSION}"], check=True, capture_output=True)
        try:
            wait_ready(f"http://127.0.0.1:{port}")
            out.append(round(time.monotonic() - start, 2))
        finally:
            subprocess.run(["docker", "rm", "-f", name], capture_output=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--cold-runs", type=int, default=3)
    args = p.parse_args()
    reason = docker_unavailable()
    if reason:
        raise SystemExit(reason)
    port = free_port()
    env = {**build_env(port), "AISLE_API_KEYS": uuid.uuid4().hex, "AISLE_PG_PASSWORD": uuid.uuid4().hex}
    built = build_images(env)
    result: dict[str, Any] = {"machine": machine.describe(), "build_seconds": round(built, 1),
                              "image": f"aisle:{VERSION}", "image_bytes": image_size(f"aisle:{VERSION}")}
    print(f"image aisle:{VERSION}: {result['image_bytes'] / 1e9:.2f} GB (built in {built:.0f} s)", file=sys.stderr)
    up = time.monotonic()
    with fleet_up(f"aislebench{uuid.uuid4().hex[:6]}", env) as fleet:
        wait_ready(fleet.url)  # `compose up` waited for the init job (training) and every health check
        result["compose_up_to_ready_s"] = round(time.monotonic() - up, 1)
        users = [u["user_id"] for u in httpx.get(f"{fleet.url}/api/web/users", params={"k": 50}).json()["users"]]
        rounds = []
        for replicas in (2, 1, 2):
            lb_upstreams(fleet, "api-1|api-2" if replicas == 2 else "api-1")
            r = closed(port, args.connections, args.seconds, users)
            r["replicas"] = replicas
            rounds.append(r)
            print(f"{replicas} replica(s): {r['achieved_rate']:.0f} req/s, p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms,"
                  f" {r['errors']} errors", file=sys.stderr)
        result["closed_loop"] = rounds
        result["cold_start_seconds"] = cold_start(fleet, args.cold_runs)
        print(f"cold start (docker run to /ready): {result['cold_start_seconds']} s", file=sys.stderr)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
