"""Docker for the fleet test and benchmark: start dockerd when it is not running, build the images, run compose.

These machines reach Debian's mirror and PyPI but no container registry, so every image is built here: the base
from Debian packages (`deploy/base.sh`: debootstrap + `docker import`, once per machine: it is cached by tag),
then the Dockerfiles on it. The host's pip settings say where torch's CPU wheel lies and which CA bundle reaches
PyPI; `prepare_build_local` hands both to `docker build` through `deploy/build-local/`.
"""

from __future__ import annotations

import configparser
import contextlib
import os
import shutil
import subprocess
import tempfile
import time
import tomllib
import warnings
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BASE_TAG = "aisle-base:bookworm"
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def _docker_answers() -> bool:
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def docker_unavailable() -> str | None:
    """Why the fleet cannot run here (None when it can): starts dockerd as root when it is installed but idle."""
    if shutil.which("docker") is None:
        return "docker is not installed (.ci/run installs docker.io with apt)"
    if compose_command() is None:
        return "neither `docker compose` nor `docker-compose` is installed (.ci/run installs docker-compose)"
    if _docker_answers():
        return None
    if shutil.which("dockerd") is None or os.geteuid() != 0:
        return "the Docker daemon is not running, and this user cannot start it (dockerd as root)"
    log = Path(tempfile.gettempdir()) / "aisle-dockerd.log"
    # its own session: the daemon outlives the test run, as a system service would (the next run reuses it)
    subprocess.Popen(["dockerd"], stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if _docker_answers():
            return None
        time.sleep(1)
    return f"dockerd did not start within 60 s: {log.read_text(errors='replace')[-1500:]}"


def compose_command() -> list[str] | None:
    """`docker compose` (v2) where the plugin is installed, else Debian's `docker-compose` (v1.29): both read
    compose.yaml."""
    with contextlib.suppress(OSError, subprocess.TimeoutExpired):
        if subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30).returncode == 0:
            return ["docker", "compose"]
    return ["docker-compose"] if shutil.which("docker-compose") else None


def _pip_settings() -> tuple[list[Path], Path | None]:
    """The wheel folders (find-links) and CA bundle (cert) the host's pip uses: environment, then its files."""
    links = os.environ.get("PIP_FIND_LINKS", "").split()
    cert = os.environ.get("PIP_CERT")
    for conf in (Path("/etc/pip.conf"), Path.home() / ".config/pip/pip.conf", Path.home() / ".pip/pip.conf"):
        parser = configparser.ConfigParser()
        with contextlib.suppress(OSError, configparser.Error):
            parser.read(conf)
            links += parser.get("global", "find-links", fallback="").split()
            cert = cert or parser.get("global", "cert", fallback=None)
    folders = [Path(link.removeprefix("file://")) for link in links if "://" not in link or link.startswith("file:")]
    return [f for f in folders if f.is_dir()], Path(cert) if cert else None


def prepare_build_local() -> None:
    """Give `docker build` the host's torch wheel and CA bundle (deploy/build-local/, ignored by git), so the
    image builds where the PyTorch index is out of reach or TLS is inspected; a user's build has neither."""
    local = ROOT / "deploy" / "build-local"
    folders, cert = _pip_settings()
    cert = cert if cert and cert.is_file() else Path("/etc/ssl/certs/ca-certificates.crt")
    if cert.is_file():
        shutil.copyfile(cert, local / "ca.pem")
    for folder in folders:
        for wheel in folder.glob("torch-2.13.0*cp311*.whl"):
            target = local / "wheels" / wheel.name
            if not target.exists():
                target.parent.mkdir(exist_ok=True)
                shutil.copyfile(wheel, target)


def build_env(port: int) -> dict[str, str]:
    """The compose settings of a fleet on this machine: every image on the Debian-built base."""
    return {**os.environ, "AISLE_BASE": BASE_TAG, "AISLE_DEBIAN_BASE": BASE_TAG, "AISLE_VERSION": VERSION,
            "AISLE_PORT": str(port)}


def build_images(env: dict[str, str]) -> float:
    """The base (when absent) and every image of compose.yaml; returns the seconds it took."""
    start = time.monotonic()
    prepare_build_local()
    subprocess.run([str(ROOT / "deploy" / "base.sh"), BASE_TAG], check=True, cwd=ROOT)
    compose = compose_command()
    assert compose is not None
    # compose v1 builds one image after the other unless told (v2 builds in parallel by itself): the apt-bound
    # Redis/PostgreSQL/nginx builds then overlap the pip-bound Aisle image
    parallel = ["--parallel"] if compose == ["docker-compose"] else []
    subprocess.run([*compose, "-f", str(ROOT / "compose.yaml"), "build", "-q", *parallel], check=True, cwd=ROOT,
                   env=env)
    prune_superseded()
    return time.monotonic() - start


def keep_build_cache() -> None:
    """Tag the newest build stage (`aisle-build-cache:VERSION`), so the prune that follows keeps its layers. The
    legacy builder's layer cache IS those untagged images: pruning every one of them threw away the PyTorch and
    dependency layers, and each later build reinstalled them (after a source change 369 s instead of 127 s on a
    quiet 2-core machine; most of the fleet test's ~10-minute setup under the suite's load). The tag moves to each
    new build, so the superseded stage is pruned the next time; the layers it shares with the new one stay."""
    out = subprocess.run(["docker", "images", "--filter", "dangling=true", "--filter", "label=org.aisle.stage=build",
                          "--format", "{{.CreatedAt}}\t{{.ID}}"], capture_output=True, text=True)
    rows = sorted(line.split("\t") for line in out.stdout.splitlines() if "\t" in line)
    if out.returncode == 0 and rows:
        subprocess.run(["docker", "tag", rows[-1][1], f"aisle-build-cache:{VERSION}"], capture_output=True)


def prune_superseded() -> None:
    """Remove the untagged Aisle images a rebuild leaves behind (the image the new tag replaced, the superseded
    build stage): every source change makes a new 2.7 GB image, and repeated runs filled this machine's disk. The
    newest build stage is kept, tagged (`keep_build_cache`): it is the next build's cache.
    Best effort: two test processes that built at once prune at once, and dockerd refuses the second ("a prune
    operation is already running"): that one waits and tries again, and a cleanup that still fails only warns (the
    images are left for the next run's prune), never fails the test that asked for the images."""
    keep_build_cache()
    for label in ("org.opencontainers.image.title=aisle", "org.aisle.stage=build"):
        for _ in range(30):
            done = subprocess.run(["docker", "image", "prune", "-f", "--filter", f"label={label}"],
                                  capture_output=True, text=True)
            if done.returncode == 0:
                break
            time.sleep(2)
        else:
            warnings.warn(f"docker image prune ({label}) failed: {done.stderr.strip()}", stacklevel=2)


def image_size(tag: str) -> int:
    out = subprocess.run(["docker", "image", "inspect", "-f", "{{.Size}}", tag], capture_output=True, text=True,
                         check=True)
    return int(out.stdout)


class Fleet:
    """One compose project (its own network and volumes) and the commands a test runs against it."""

    def __init__(self, project: str, env: dict[str, str]) -> None:
        compose = compose_command()
        assert compose is not None
        self.project = project
        self.env = env
        self.url = f"http://127.0.0.1:{env['AISLE_PORT']}"
        self._compose = [*compose, "-f", str(ROOT / "compose.yaml"), "-p", project]

    def compose(self, *args: str, timeout: float = 600) -> str:
        done = subprocess.run([*self._compose, *args], cwd=ROOT, env=self.env, capture_output=True, text=True,
                              timeout=timeout)
        if done.returncode != 0:
            raise AssertionError(f"compose {' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        return done.stdout

    def container(self, service: str) -> str:
        ids = self.compose("ps", "-q", service).split()
        assert ids, f"no container of {service}"
        return ids[0]

    def exec(self, service: str, *command: str) -> str:
        done = subprocess.run(["docker", "exec", self.container(service), *command], capture_output=True,
                              text=True, timeout=60)
        if done.returncode != 0:
            raise AssertionError(f"{service}: {' '.join(command)} failed: {done.stderr[-2000:]}")
        return done.stdout

    def sql(self, query: str) -> str:
        return self.exec("postgres", "psql", "-U", "aisle", "-d", "aisle", "-tAc", query).strip()

    def logs(self) -> str:
        with contextlib.suppress(AssertionError, subprocess.TimeoutExpired):
            return self.compose("logs", "--no-color", "--tail", "60", timeout=60)
        return ""


@contextlib.contextmanager
def fleet_up(project: str, env: dict[str, str], *services: str) -> Iterator[Fleet]:
    """`compose up` (waits for the init job and the health checks), then `compose down -v` whatever happens."""
    fleet = Fleet(project, env)
    try:
        fleet.compose("up", "-d", *services, timeout=900)
        yield fleet
    finally:
        with contextlib.suppress(AssertionError, subprocess.TimeoutExpired):
            fleet.compose("down", "-v", "--remove-orphans", timeout=300)
