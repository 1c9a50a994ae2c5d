"""`manage.py cluster` (deploy/management/commands/cluster.py) on real
processes: it serves through nginx, restarts a killed worker, stops everything
on Ctrl-C, and leaves nothing running when it is killed itself."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from deploy.management.commands import cluster
from deploy.processes import find_nginx, find_redis_server, port_is_free
from tests.cluster.clients import ChatClient, client_pool, make_member, make_room
from tests.servers import ROOT, answers, database_url_for_tests, free_port, http_get, wait_until

NGINX = find_nginx()
WORKDIR = re.compile(rf"/\S*/{cluster.WORKDIR_PREFIX}\d+-[^/\s]+")


# ---------------------------------------------------------------- without processes


def test_cluster_without_redis_says_so(monkeypatch):
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.setattr(cluster, "find_redis_server", lambda: None)
    with pytest.raises(CommandError, match=r"No Redis: REDIS_URL is not set and no redis-server"):
        call_command("cluster", "--workers", "1", "--worker-port", str(free_port()), "--no-nginx")


def test_cluster_refuses_a_busy_port():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(CommandError, match=rf"Port {port} on 127.0.0.1 is in use"):
            call_command("cluster", "--workers", "1", "--worker-port", str(port), "--no-nginx")


def test_restart_backoff_doubles_up_to_a_limit():
    assert [cluster.backoff(n) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]


def test_work_directories_of_dead_commands_are_removed(tmp_path):
    finished = subprocess.Popen(["true"])
    finished.wait()  # a pid that no longer runs
    dead = tmp_path / f"{cluster.WORKDIR_PREFIX}{finished.pid}-abc123"
    alive = tmp_path / f"{cluster.WORKDIR_PREFIX}{os.getpid()}-def456"
    unrelated = tmp_path / f"{cluster.WORKDIR_PREFIX}something"
    for path in (dead, alive, unrelated):
        path.mkdir()
        (path / "nginx.conf").write_text("")
    assert cluster.remove_stale_workdirs(tmp_path) == [dead]
    assert not dead.exists() and alive.exists() and unrelated.exists()


def test_a_child_dies_with_its_parent_even_by_sigkill(tmp_path):
    """die_with_parent(): a parent is SIGKILLed (no handler of its runs), its
    child goes too."""
    script = (
        "import subprocess, sys, time\n"
        "from deploy.processes import die_with_parent\n"
        "child = subprocess.Popen(['sleep', '60'], preexec_fn=die_with_parent())\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    child = int(parent.stdout.readline())
    assert not gone(child)
    parent.kill()
    parent.wait()
    wait_until(lambda: gone(child), 10, "the child to die with its parent")


# ---------------------------------------------------------------- a cluster


def consecutive_free_ports(count: int) -> int:
    for _ in range(50):
        first = free_port()
        if all(port_is_free("127.0.0.1", first + i) for i in range(count)):
            return first
    raise RuntimeError("no run of free ports")


def descendants(pid: int) -> dict[int, str]:
    """{pid: command line} of every process below `pid`."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found: dict[int, str] = {}
    todo = list(children.get(pid, []))
    while todo:
        child = todo.pop()
        try:
            found[child] = (
                (Path("/proc") / str(child) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            )
        except OSError:
            continue
        todo.extend(children.get(child, []))
    return found


def gone(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")  # a zombie waiting for a parent that is not ours


class RunningCluster:
    def __init__(self, proc: subprocess.Popen, port: int, worker_ports: list[int], own_redis):
        self.proc, self.port, self.worker_ports = proc, port, worker_ports
        self.own_redis = own_redis  # started a throwaway redis-server
        self.lines: list[str] = []
        self.url: str | None = None
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            match = re.search(rf"{re.escape(cluster.READY_PREFIX)} (\S+)", line)
            if match:
                self.url = match[1]

    def output(self) -> str:
        return "\n".join(self.lines[-60:])

    def children(self) -> dict[int, str]:
        return descendants(self.proc.pid)

    def worker_pid(self, port: int) -> int | None:
        """The Daphne process serving `port`, if one does."""
        return next(
            (
                pid
                for pid, cmd in self.children().items()
                if "daphne" in cmd and f"-p {port} " in cmd
            ),
            None,
        )

    def workdir(self) -> Path:
        found = {m for cmd in self.children().values() for m in WORKDIR.findall(cmd)}
        assert len(found) == 1, found
        return Path(found.pop())


@contextlib.contextmanager
def cluster_process(redis_url):
    """`manage.py cluster --workers 2` on the test database, with nginx in front
    when it is installed, and a throwaway Redis of its own (when there is a
    redis-server binary)."""
    first = consecutive_free_ports(2)
    port = next(p for p in iter(free_port, None) if p not in (first, first + 1))
    env = {
        **os.environ,
        "DATABASE_URL": database_url_for_tests(),
        "DJANGO_DEBUG": "0",
        # This process's key, so that sessions made here are valid there.
        "DJANGO_SECRET_KEY": settings.SECRET_KEY,
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "CHAT_RATE_LIMIT": "off",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("REDIS_URL", None)
    own_redis = find_redis_server() is not None
    if not own_redis:
        env["REDIS_URL"] = redis_url
    argv = [sys.executable, "manage.py", "cluster", "--workers", "2"]
    argv += ["--port", str(port), "--worker-port", str(first)]
    if NGINX is None:
        argv.append("--no-nginx")  # the rest is tested all the same
    proc = subprocess.Popen(
        argv,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    running = RunningCluster(proc, port, [first, first + 1], own_redis)
    try:
        wait_until(lambda: running.url or proc.poll() is not None, 90, "the cluster's URL")
        if proc.poll() is not None:
            pytest.fail(f"manage.py cluster exited with {proc.returncode}:\n{running.output()}")
        yield running
    finally:
        if proc.poll() is None:  # not stopped by a test: leave nothing behind
            for pid in [*descendants(proc.pid), proc.pid]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            proc.wait(10)


@pytest.fixture(scope="module")
def running_cluster(django_db_setup, redis_url):
    with cluster_process(redis_url) as running:
        yield running


async def chat_round_trip(open_one, base_a: str, base_b: str | None = None) -> None:
    """alice connects through `base_a`, bob through `base_b` (or `base_a`): a
    message from alice reaches both, and each sees the other online."""
    alice, bob = (
        await make_member(f"a{secrets.token_hex(3)}"),
        await make_member(f"b{secrets.token_hex(3)}"),
    )
    room = await make_room(alice)
    ca: ChatClient = await open_one(alice, base_a, room.slug)
    cb: ChatClient = await open_one(bob, base_b or base_a, room.slug)
    assert cb.hello["online"] == sorted([alice.name, bob.name])
    await ca.wait_presence("join", bob.name)
    await ca.send_message("through the cluster", client_id="round-trip")
    for client in (ca, cb):
        await client.wait(lambda c=client: c.has_message("through the cluster"), "message")


@pytest.mark.cluster
@pytest.mark.django_db(transaction=True)
async def test_cluster_command_serves_http_and_websockets_at_its_url(running_cluster):
    """Through nginx (or, without nginx, on the first worker): health, static
    files, and a chat between two WebSockets."""
    url = running_cluster.url
    if NGINX:
        assert url == f"http://127.0.0.1:{running_cluster.port}/"
        assert "nginx -> 2 Daphne worker(s)" in running_cluster.output()
    else:
        assert url == f"http://127.0.0.1:{running_cluster.worker_ports[0]}/"
        assert "nginx is not installed" in running_cluster.output()
    assert http_get(url + "healthz") == (200, b'{"status": "ok"}')
    assert http_get(url + "static/chat/chat.css")[0] == 200
    for port in running_cluster.worker_ports:
        assert http_get(f"http://127.0.0.1:{port}/healthz")[0] == 200
    async with client_pool() as open_one:
        await chat_round_trip(open_one, url.replace("http://", "ws://").rstrip("/"))


@pytest.mark.cluster
@pytest.mark.django_db(transaction=True)  # ordered with the other tests on this cluster
def test_container_healthcheck_script_against_a_real_worker(running_cluster):
    port = running_cluster.worker_ports[0]

    def check(port: int) -> int:
        env = {"PATH": os.environ["PATH"], "DJANGO_ALLOWED_HOSTS": "localhost,127.0.0.1"}
        argv = [sys.executable, "deploy/healthcheck.py"]
        result = subprocess.run(
            argv, cwd=ROOT, env={**env, "PORT": str(port)}, capture_output=True, timeout=20
        )
        return result.returncode

    assert check(port) == 0
    assert check(free_port()) == 1  # nothing listens there


@pytest.mark.cluster
@pytest.mark.django_db(transaction=True)
async def test_a_killed_worker_is_restarted_and_serves_again(running_cluster):
    port, other = running_cluster.worker_ports[1], running_cluster.worker_ports[0]
    victim = running_cluster.worker_pid(port)
    assert victim, running_cluster.children()
    os.kill(victim, signal.SIGKILL)
    killed_at = time.monotonic()

    def back() -> int | None:
        pid = running_cluster.worker_pid(port)
        return (
            pid if pid and pid != victim and answers(f"http://127.0.0.1:{port}/healthz") else None
        )

    pid = await asyncio.to_thread(wait_until, back, 30, "the worker to come back", 0.1)
    print(f"worker on port {port} back after {time.monotonic() - killed_at:.1f}s")
    output = running_cluster.output()
    assert "web-2 exited with signal SIGKILL; restarting it in 1s." in output
    await asyncio.to_thread(
        wait_until, lambda: f"web-2 is back (pid {pid})." in running_cluster.output(), 10, "news"
    )
    # It rejoined the fan-out: a client on it and one on the other worker chat.
    async with client_pool() as open_one:
        await chat_round_trip(open_one, f"ws://127.0.0.1:{port}", f"ws://127.0.0.1:{other}")


@pytest.mark.skipif(NGINX is None, reason="nginx is not installed")
@pytest.mark.cluster
@pytest.mark.django_db(transaction=True)
def test_a_killed_nginx_is_restarted_without_its_old_workers_in_the_way(running_cluster):
    """SIGKILL of nginx's master leaves its workers holding the port: the
    supervisor kills them with the master's process group, then restarts."""

    def nginx(kind: str) -> set[int]:
        return {p for p, cmd in running_cluster.children().items() if f"nginx: {kind}" in cmd}

    master, workers = nginx("master"), nginx("worker")
    assert len(master) == 1 and workers, running_cluster.children()
    os.kill(master.pop(), signal.SIGKILL)
    wait_until(lambda: all(gone(pid) for pid in workers), 10, "the old workers to go")
    wait_until(
        lambda: nginx("master") and answers(running_cluster.url + "healthz"), 30, "nginx back"
    )
    assert "nginx exited with signal SIGKILL; restarting it in 1s." in running_cluster.output()


@pytest.mark.cluster
def test_cluster_command_stops_everything_on_ctrl_c(django_db_setup, redis_url):
    """SIGINT stops nginx, both workers and the throwaway Redis, removes the
    work directory, and the command exits 0. (A cluster of its own: the
    shared one stays up.)"""
    with cluster_process(redis_url) as running:
        proc = running.proc
        children = running.children()
        kinds = " ".join(children.values())
        assert kinds.count("daphne") == 2, children
        if NGINX:
            assert "nginx: master process" in kinds and "nginx: worker process" in kinds, children
        if running.own_redis:
            assert "redis-server" in kinds, children
        workdir = running.workdir() if NGINX or running.own_redis else None

        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0, running.output()
        running.reader.join(5)
        left = {pid: cmd for pid, cmd in children.items() if not gone(pid)}
        assert not left, f"still running after Ctrl-C: {left}"
        assert "Stopped (SIGINT)." in running.output()
        for port in [running.port, *running.worker_ports]:
            assert port_is_free("127.0.0.1", port), f"port {port} still taken"
        assert workdir is None or not workdir.exists()


@pytest.mark.cluster
def test_killing_the_cluster_command_leaves_nothing_running(django_db_setup, redis_url):
    """SIGKILL: the command runs no code of its own, yet its children follow
    it (parent-death signal) and free their ports; the next command removes
    the work directory it left."""
    with cluster_process(redis_url) as running:
        children = running.children()
        assert " ".join(children.values()).count("daphne") == 2, children
        workdir = running.workdir() if NGINX or running.own_redis else None
        running.proc.kill()
        running.proc.wait(10)
        killed_at = time.monotonic()
        wait_until(lambda: all(gone(pid) for pid in children), 15, "the children to go", 0.1)
        print(f"{len(children)} children gone {time.monotonic() - killed_at:.2f}s after the kill")
        ports = [running.port, *running.worker_ports]
        wait_until(lambda: all(port_is_free("127.0.0.1", p) for p in ports), 10, "free ports")
    if workdir is not None:
        assert workdir.exists()
        assert workdir in cluster.remove_stale_workdirs(workdir.parent)
        assert not workdir.exists()
