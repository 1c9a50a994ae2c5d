"""docker-compose.yml brought up for real: a project of its own, its web
replicas, their logs, and which replica a socket landed on."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from deploy.processes import free_port, wait_until
from tests.servers import ROOT, OnLocalPort

UP_TIMEOUT = 300  # seconds for `up` (it waits for migrations and healthchecks)
PROJECT_PREFIX = "chatcomposetest"
PROJECT_LABEL = "com.docker.compose.project"
# The developer's own settings stay out of the test's compose interpolation.
OWN_VARIABLES = ("DJANGO_", "CHAT_", "POSTGRES_", "DATABASE_URL", "REDIS_URL", "PG")


def compose_command() -> list[str] | None:
    """`docker compose` (v2) when the plugin is there, else `docker-compose`."""
    try:
        v2 = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30)
        if v2.returncode == 0:
            return ["docker", "compose"]
    except (OSError, subprocess.TimeoutExpired):
        pass
    return ["docker-compose"] if shutil.which("docker-compose") else None


def docker(*args: str, timeout: float = 120, check: bool = True) -> str:
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout


def docker_ok(*args: str, timeout: float = 60) -> bool:
    result = subprocess.run(["docker", *args], capture_output=True, timeout=timeout)
    return result.returncode == 0


class Compose:
    def __init__(self, project: str, env: dict[str, str]):
        command = compose_command()
        if command is None:
            raise RuntimeError("Neither `docker compose` nor `docker-compose` is installed.")
        self.project = project
        # No .env from the working tree: only what the test sets.
        self.env_file = Path(tempfile.mkstemp(prefix="chat-compose-", suffix=".env")[1])
        self.base = [*command, "-p", project, "-f", str(ROOT / "docker-compose.yml")]
        self.base += ["--env-file", str(self.env_file)]
        self.env = env

    def __call__(self, *args: str, timeout: float = UP_TIMEOUT) -> str:
        result = subprocess.run(
            [*self.base, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={
                **{k: v for k, v in os.environ.items() if not k.startswith(OWN_VARIABLES)},
                **self.env,
            },
            cwd=ROOT,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"compose {' '.join(args)} exited with {result.returncode}:\n"
                f"{result.stdout[-3000:]}{result.stderr[-3000:]}"
            )
        return result.stdout

    def containers(self, service: str | None = None, *, running: bool = True) -> list[str]:
        """Container ids of the project (of one service), oldest first."""
        args = ["ps", "-q", "--filter", f"label={PROJECT_LABEL}={self.project}"]
        if service:
            args += ["--filter", f"label=com.docker.compose.service={service}"]
        if not running:
            args.append("--all")
        return list(reversed(docker(*args).split()))

    def close(self) -> None:
        self.env_file.unlink(missing_ok=True)


def inspect(container: str) -> dict:
    return json.loads(docker("inspect", container))[0]


def name_of(container: str) -> str:
    return inspect(container)["Name"].lstrip("/")


def health(container: str) -> str:
    """`healthy`, `starting`, ... while it runs; else `exited (code)` and the like."""
    state = inspect(container)["State"]
    if state["Status"] != "running":
        return f"{state['Status']} ({state['ExitCode']})"
    return state.get("Health", {}).get("Status") or "running"


def logs(container: str, tail: int | None = None) -> str:
    args = ["logs", *(["--tail", str(tail)] if tail else []), container]
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=60)
    return result.stdout + result.stderr


@dataclass
class Stack(OnLocalPort):
    """The project, published by nginx on 127.0.0.1:`port`."""

    compose: Compose
    port: int
    secret_key: str
    extra: list[str]  # containers a test added to the `web` replicas

    def web(self) -> list[str]:
        """Running replicas of `web` (and any a test added)."""
        return [*self.compose.containers("web"), *self.extra]

    def wait_healthy(self, replicas: int, timeout: float = 120) -> list[str]:
        def ready():
            web = self.compose.containers("web")
            healthy = [c for c in web if health(c) == "healthy"]
            return len(web) == replicas == len(healthy) and self.answers("/healthz") and web

        return wait_until(ready, timeout, f"{replicas} healthy web replicas", interval=0.5)

    def answers(self, path: str) -> bool:
        try:
            with urllib.request.urlopen(self.http + path, timeout=5) as response:
                return response.status == 200
        except OSError:
            return False

    def report(self, tail: int = 60) -> str:
        """The end of every container's log, for a failing step."""
        parts = []
        for container in dict.fromkeys(self.compose.containers(running=False) + self.extra):
            try:
                title = f"{name_of(container)} ({health(container)})"
            except RuntimeError:
                continue  # removed meanwhile
            parts.append(f"----- {title}: last {tail} lines\n{logs(container, tail)}")
        return "\n".join(parts)


def new_stack() -> Stack:
    """A compose project of its own, on a free port of 127.0.0.1."""
    port = free_port()
    secret_key = secrets.token_urlsafe(50)
    env = {
        "DJANGO_SECRET_KEY": secret_key,
        # Characters that would break a URL: the password must still work.
        "POSTGRES_PASSWORD": f"p@ss:w/rd?#%&= {secrets.token_hex(4)}",
        "CHAT_BIND": "127.0.0.1",
        "CHAT_PORT": str(port),
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        # A scaling test, not a rate-limit test: its people all sign up and
        # make rooms from one address.
        "CHAT_RATE_LIMIT": "off",
        "CHAT_SIGNUP_LIMIT_IP": "off",
        "CHAT_LOGIN_LIMIT_IP": "off",
        "CHAT_ROOMS_PER_HOUR": "0",
    }
    compose = Compose(f"{PROJECT_PREFIX}{secrets.token_hex(3)}", env)
    return Stack(compose, port, secret_key, extra=[])


def remove_leftovers(say) -> None:
    """What earlier runs that died before `down` left: their containers would
    come back with the engine (restart: unless-stopped), holding ports."""
    label = f'{{{{.Label "{PROJECT_LABEL}"}}}}'
    for kind, listing, key in [
        ("container", ["container", "ls", "--all"], "{{.ID}}"),
        ("network", ["network", "ls"], "{{.ID}}"),
        ("volume", ["volume", "ls"], "{{.Name}}"),
    ]:
        stale = []
        for row in docker(*listing, "--format", f"{key} {label}").splitlines():
            name, _, project = row.partition(" ")
            if project.startswith(PROJECT_PREFIX):
                stale.append(name)
        if stale:
            docker(kind, "rm", *(["-f"] if kind == "container" else []), *stale)
            say(f"removed {len(stale)} {kind}(s) left by an earlier run")


def bring_up(stack: Stack, say) -> None:
    started = time.monotonic()
    stack.compose("build", "web", timeout=900)
    say(f"built the web image in {time.monotonic() - started:.0f}s")
    started = time.monotonic()
    stack.compose("up", "-d", "--no-build", "--scale", "web=3")
    stack.wait_healthy(3)
    say(f"compose up --scale web=3: healthy through nginx in {time.monotonic() - started:.0f}s")


def stop_stack(stack: Stack, say) -> None:
    started = time.monotonic()
    for container in stack.extra:
        docker("rm", "-f", container, check=False)
    try:
        stack.compose("down", "-v", "--remove-orphans", "-t", "10")
    finally:
        stack.compose.close()
        # Layers of earlier builds of the web image.
        docker("image", "prune", "-f", check=False)
    say(f"compose down -v in {time.monotonic() - started:.0f}s")


class Replicas:
    """Which replica a socket landed on, from the replicas' own access logs:
    Daphne writes `WSCONNECT <path>` when it accepts a socket."""

    def __init__(self, stack: Stack):
        self.stack = stack

    def connects(self, path: str) -> dict[str, int]:
        return {c: logs(c).count(f'"WSCONNECT {path}"') for c in self.stack.web()}

    async def locate(self, before: dict[str, int], path: str, timeout: float = 10) -> str:
        """The replica whose count of connects to `path` went up since `before`."""
        deadline = time.monotonic() + timeout
        while True:
            now = await asyncio.to_thread(self.connects, path)
            grew = [c for c, n in now.items() if n > before.get(c, 0)]
            if len(grew) == 1:
                return grew[0]
            assert len(grew) < 2, f"several replicas logged a connect to {path}: {grew}"
            assert time.monotonic() < deadline, f"no replica logged the connect to {path}"
            await asyncio.sleep(0.1)
