"""Deployment: the compose file and image (structurally: no Docker engine is
needed), the load balancer configurations (checked by nginx itself and run for
real in front of real workers), `manage.py cluster` end to end, and the
production settings."""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from django.conf import settings
from django.core.management import CommandError, call_command

from chat.management.commands import cluster
from tests.cluster.clients import ChatClient, client_pool, make_member, make_room
from tests.servers import ROOT, database_url_for_tests, free_port, run_python, wait_until

NGINX = cluster.find_nginx()
needs_nginx = pytest.mark.skipif(
    NGINX is None, reason="nginx is not installed (apt-get install nginx-light)"
)


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def service_with_image(services: dict, prefix: str) -> tuple[str, dict]:
    found = [(n, s) for n, s in services.items() if str(s.get("image", "")).startswith(prefix)]
    assert len(found) == 1, f"expected one service running {prefix}*, found {found}"
    return found[0]


def command_text(service: dict) -> str:
    command = service.get("command", "")
    return " ".join(command) if isinstance(command, list) else command


def conditions(service: dict) -> dict[str, str]:
    depends = service.get("depends_on", {})
    assert isinstance(depends, dict), "depends_on needs the long form, with conditions"
    return {name: spec.get("condition") for name, spec in depends.items()}


def nginx_block(text: str, opening: str) -> str:
    """The body of the `{ ... }` block that starts with `opening`."""
    start = text.index(opening)
    i = text.index("{", start) + 1
    depth = 1
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i:j]
    raise AssertionError(f"unbalanced block {opening!r}")


def directives(block: str) -> list[str]:
    """Directives of a block, comments dropped and whitespace normalized."""
    lines = [re.sub(r"#.*", "", line) for line in block.splitlines()]
    return [" ".join(d.split()) for d in " ".join(lines).split(";") if d.strip()]


def assert_proxies_websockets(conf: str) -> None:
    ws = directives(nginx_block(conf, "location /ws/"))
    assert any(d.startswith("proxy_pass http://") for d in ws), ws
    assert "proxy_http_version 1.1" in ws
    assert "proxy_set_header Upgrade $http_upgrade" in ws
    assert "proxy_set_header Connection $connection_upgrade" in ws
    upgrade_map = directives(nginx_block(conf, "map $http_upgrade $connection_upgrade"))
    assert "default upgrade" in upgrade_map and '"" close' in upgrade_map
    # The Host with its port: Django's CSRF Origin check compares against it.
    assert "proxy_set_header Host $http_host" in ws
    assert any(d.startswith("proxy_read_timeout") for d in ws)
    assert any(
        d.startswith("proxy_pass http://") for d in directives(nginx_block(conf, "location / {"))
    )


# ---------------------------------------------------------------- compose, image


def test_compose_has_the_services_and_their_order():
    services = compose()["services"]
    redis_name, redis_svc = service_with_image(services, "redis")
    db_name, db_svc = service_with_image(services, "postgres")
    lb_name, lb = service_with_image(services, "nginx")
    migrate, web = services["migrate"], services["web"]

    assert "migrate" in command_text(migrate) and "manage.py" in command_text(migrate)
    assert migrate.get("restart", "no") == "no", "migrate is a one-shot step"
    assert conditions(migrate) == {db_name: "service_healthy"}
    assert conditions(web) == {
        "migrate": "service_completed_successfully",
        db_name: "service_healthy",
        redis_name: "service_healthy",
    }
    assert conditions(lb) == {"web": "service_healthy"}
    # Whatever is waited on as healthy has a healthcheck.
    for name, service in services.items():
        for dependency, condition in conditions(service).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            if condition == "service_healthy":
                assert "healthcheck" in services[dependency], dependency
    assert "redis-cli" in " ".join(redis_svc["healthcheck"]["test"])
    assert "pg_isready" in " ".join(db_svc["healthcheck"]["test"])
    assert any(v.endswith(":/var/lib/postgresql/data") for v in db_svc["volumes"])


def test_compose_web_is_scalable_healthchecked_and_configured_by_environment():
    spec = compose()
    web, migrate = spec["services"]["web"], spec["services"]["migrate"]
    # `docker compose up --scale web=3`: no fixed host port, no fixed name.
    assert "ports" not in web and "container_name" not in web
    assert "8000" in [str(p) for p in web.get("expose", [])]
    assert "daphne" in command_text(web) and "chatsite.asgi:application" in command_text(web)
    assert web["build"] == migrate["build"] and web["image"] == migrate["image"]

    check = " ".join(web["healthcheck"]["test"])
    assert "deploy/healthcheck.py" in check
    assert "/healthz" in (ROOT / "deploy" / "healthcheck.py").read_text()

    services = spec["services"]
    db_name, _ = service_with_image(services, "postgres")
    redis_name, _ = service_with_image(services, "redis")
    for service in (web, migrate):
        env = service["environment"]
        assert env["DJANGO_DEBUG"] == "0"
        assert re.fullmatch(r"\$\{DJANGO_SECRET_KEY:\?.+\}", env["DJANGO_SECRET_KEY"]), (
            "the secret key must come from the environment, required"
        )
        assert env["DJANGO_ALLOWED_HOSTS"].startswith("${DJANGO_ALLOWED_HOSTS")
        assert env["DATABASE_URL"].startswith("postgres://")
        assert f"@{db_name}:5432/" in env["DATABASE_URL"]
        assert env["REDIS_URL"] == f"redis://{redis_name}:6379/0"
        assert "DJANGO_TLS" in env
    assert "pgdata" in spec["volumes"]


def test_compose_load_balancer_publishes_a_port_and_proxies_websockets_to_web():
    services = compose()["services"]
    _, lb = service_with_image(services, "nginx")
    published = [str(p) for p in lb["ports"]]
    assert len(published) == 1 and published[0].endswith(":80"), published
    mounts = {v.split(":")[0]: v.split(":")[1] for v in lb["volumes"]}
    assert mounts["./deploy/nginx.conf"] == "/etc/nginx/nginx.conf"
    # The balancer's own liveness: one replica down must not make it unhealthy.
    assert "/lb-healthz" in " ".join(lb["healthcheck"]["test"])

    conf = (ROOT / "deploy" / "nginx.conf").read_text()
    assert_proxies_websockets(conf)
    server = directives(nginx_block(conf, "server {"))
    assert "listen 80" in server
    # Every replica of `web`: looked up again through Docker's DNS.
    assert "set $web web:8000" in server
    assert "return 200" in " ".join(directives(nginx_block(conf, "location = /lb-healthz")))
    assert any(d.startswith("resolver 127.0.0.11") for d in directives(conf))


def test_dockerfile_collects_static_files_and_runs_daphne():
    text = (ROOT / "Dockerfile").read_text()
    instructions = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert instructions[0].startswith("FROM python:3.1")
    assert re.search(r"^RUN .*manage\.py collectstatic --noinput", text, re.M | re.S)
    cmd = next(line for line in instructions if line.startswith("CMD"))
    assert '"daphne"' in cmd and '"chatsite.asgi:application"' in cmd and '"0.0.0.0"' in cmd
    assert re.search(r"^HEALTHCHECK .*\n?.*deploy/healthcheck\.py", text, re.M)
    assert re.search(r"^USER (?!root)\w+", text, re.M), "run unprivileged"
    assert re.search(r"^EXPOSE 8000", text, re.M)
    # The dependency layer's one-liner really lists pyproject's dependencies.
    one_liner = re.search(r'^RUN python -c "(.+?)" > /tmp/requirements\.txt', text, re.M)
    listed = subprocess.run(
        [sys.executable, "-c", one_liner[1]], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    names = {re.split(r"[<>=\[;]", requirement)[0].lower() for requirement in listed}
    assert {"django", "channels", "daphne", "channels-redis", "psycopg"} <= names
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", "db.sqlite3*", "staticfiles"} <= set(ignored)
    assert "deploy" not in ignored  # the healthcheck script is in the image


@needs_nginx
@pytest.mark.parametrize("which", ["compose", "cluster"])
def test_nginx_accepts_the_configurations(which, tmp_path):
    if which == "compose":
        conf = tmp_path / "nginx.conf"
        conf.write_text((ROOT / "deploy" / "nginx.conf").read_text())
    else:
        conf = tmp_path / "nginx.conf"
        conf.write_text(
            cluster.nginx_config(
                workdir=tmp_path, listen="127.0.0.1:1", workers=[2, 3], as_root=False
            )
        )
        assert_proxies_websockets(conf.read_text())
    result = nginx_test(conf, tmp_path)
    assert result.returncode == 0, result.stderr


def nginx_test(conf: Path, prefix: Path) -> subprocess.CompletedProcess:
    extra = f"pid {prefix}/nginx.pid;" if "pid " not in conf.read_text() else ""
    if os.geteuid() == 0 and "user " not in conf.read_text():
        extra += f" {user_directive()}"
    argv = [NGINX, "-t", "-p", str(prefix), "-c", str(conf), *cluster.nginx_error_log_args(NGINX)]
    if extra:
        argv += ["-g", extra]
    return subprocess.run(argv, capture_output=True, text=True, timeout=30)


def user_directive() -> str:
    """What the cluster command writes for root (nginx's default group may not exist)."""
    line = next(
        (
            line.strip()
            for line in cluster.nginx_config(
                workdir=Path("/tmp"), listen="1", workers=[1], as_root=True
            ).splitlines()
            if line.startswith("user ")
        ),
        "",
    )
    return line


# ---------------------------------------------------------------- settings


PRODUCTION = {
    "DJANGO_DEBUG": "0",
    "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
    "DJANGO_ALLOWED_HOSTS": "chat.example.com",
    "DJANGO_TLS": "1",
}


def test_check_deploy_is_clean_with_production_environment():
    result = run_python("manage.py", "check", "--deploy", "--fail-level", "WARNING", env=PRODUCTION)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout
    # And the check is not vacuous: without TLS it has plenty to say.
    plain = run_python(
        "manage.py",
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        env={**PRODUCTION, "DJANGO_TLS": "0"},
    )
    assert plain.returncode != 0
    assert "security.W008" in plain.stderr + plain.stdout  # SECURE_SSL_REDIRECT


@pytest.mark.parametrize(
    "argv",
    [
        ["manage.py", "check"],
        ["-m", "daphne", "-b", "127.0.0.1", "-p", "0", "chatsite.asgi:application"],
    ],
    ids=["manage.py", "daphne"],
)
def test_missing_secret_key_with_debug_off_stops_startup_clearly(argv):
    result = run_python(*argv, env={"DJANGO_DEBUG": "0", "DJANGO_ALLOWED_HOSTS": "x.example"})
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "DJANGO_SECRET_KEY is not set" in result.stderr


def test_tls_settings_redirect_to_https_except_healthz(tmp_path):
    script = """
import json, django
django.setup()
from django.conf import settings
from django.test import Client
c = Client()
plain, health = c.get("/accounts/login/"), c.get("/healthz")
secure = c.get("/accounts/login/", headers={"X-Forwarded-Proto": "https"})
print(json.dumps({
    "plain": [plain.status_code, plain.get("Location")],
    "health": health.status_code,
    "secure": [secure.status_code, secure.get("Strict-Transport-Security")],
    "cookies": [settings.SESSION_COOKIE_SECURE, settings.CSRF_COOKIE_SECURE],
}))
"""
    env = {
        **PRODUCTION,
        "DJANGO_ALLOWED_HOSTS": "testserver",
        "DJANGO_SETTINGS_MODULE": "chatsite.settings",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'tls.sqlite3'}",
    }
    result = run_python("-c", script, env=env)
    assert result.returncode == 0, result.stderr
    got = json.loads(result.stdout.strip().splitlines()[-1])
    assert got["plain"] == [301, "https://testserver/accounts/login/"]
    assert got["health"] == 200, "/healthz must answer plain HTTP healthchecks"
    assert got["secure"][0] == 200
    assert got["secure"][1].startswith("max-age=31536000")
    assert got["cookies"] == [True, True]


# ---------------------------------------------------------------- manage.py cluster


def test_cluster_without_redis_says_so(monkeypatch):
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.setattr(cluster, "find_redis_server", lambda: None)
    with pytest.raises(CommandError, match=r"No Redis: REDIS_URL is not set and no redis-server"):
        call_command("cluster", "--workers", "1", "--worker-port", str(free_port()), "--no-nginx")


def test_cluster_refuses_a_busy_port():
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(CommandError, match=rf"Port {port} on 127.0.0.1 is in use"):
            call_command("cluster", "--workers", "1", "--worker-port", str(port), "--no-nginx")


def consecutive_free_ports(count: int) -> int:
    for _ in range(50):
        first = free_port()
        if all(cluster.port_is_free("127.0.0.1", first + i) for i in range(count)):
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
    own_redis = cluster.find_redis_server() is not None
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


def http_get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def answers(url: str) -> bool:
    try:
        return http_get(url)[0] == 200
    except OSError:
        return False


async def chat_round_trip(base: str, open_one) -> None:
    """Two clients through `base` (nginx spreads them over the workers): a
    message from one reaches both."""
    alice, bob = (
        await make_member(f"a{secrets.token_hex(3)}"),
        await make_member(f"b{secrets.token_hex(3)}"),
    )
    room = await make_room(alice)
    ca: ChatClient = await open_one(alice, base, room.slug)
    cb: ChatClient = await open_one(bob, base, room.slug)
    assert cb.hello["online"] == sorted([alice.name, bob.name])
    await ca.wait_presence("join", bob.name)
    await ca.send_message("through the load balancer", client_id="lb-1")
    for client in (ca, cb):
        await client.wait(lambda c=client: c.has_message("through the load balancer"), "message")


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
        await chat_round_trip(url.replace("http://", "ws://").rstrip("/"), open_one)


@pytest.mark.cluster
def test_container_healthcheck_script_against_a_real_worker(running_cluster):
    port = running_cluster.worker_ports[0]
    env = {"PORT": str(port), "DJANGO_ALLOWED_HOSTS": "localhost,127.0.0.1"}
    assert run_python("deploy/healthcheck.py", env=env, timeout=20).returncode == 0
    env["PORT"] = str(free_port())  # nothing listens there
    assert run_python("deploy/healthcheck.py", env=env, timeout=20).returncode == 1


@needs_nginx
@pytest.mark.cluster
@pytest.mark.django_db(transaction=True)
async def test_compose_nginx_config_passes_websockets_to_a_real_worker(running_cluster):
    """deploy/nginx.conf, as the `lb` service runs it, with `web:8000` pointed at
    one of the cluster's workers and listening on a free port."""
    workdir = Path(tempfile.mkdtemp(prefix="compose-lb-"))
    port = free_port()
    conf = (ROOT / "deploy" / "nginx.conf").read_text()
    conf = conf.replace("listen 80;", f"listen 127.0.0.1:{port};")
    conf = conf.replace(
        "set $web web:8000;", f"set $web 127.0.0.1:{running_cluster.worker_ports[0]};"
    )
    temp_paths = "".join(
        f"\n    {kind}_temp_path {workdir / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    conf = conf.replace("http {", "http {" + temp_paths, 1)
    (workdir / "nginx.conf").write_text(conf)
    if os.geteuid() == 0:
        os.chmod(workdir, 0o755)
    extra = f"daemon off; pid {workdir}/nginx.pid; {user_directive() if os.geteuid() == 0 else ''}"
    proc = subprocess.Popen(
        [NGINX, "-p", str(workdir), "-c", str(workdir / "nginx.conf"), "-g", extra]
        + cluster.nginx_error_log_args(NGINX),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: proc.poll() is not None or answers(base + "/lb-healthz"),
            20,
            "nginx with the compose configuration",
        )
        assert proc.poll() is None, proc.stderr.read().decode()
        assert http_get(base + "/healthz") == (200, b'{"status": "ok"}')
        async with client_pool() as open_one:
            await chat_round_trip(f"ws://127.0.0.1:{port}", open_one)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.mark.cluster
def test_cluster_command_stops_everything_on_ctrl_c(django_db_setup, redis_url):
    """SIGINT stops nginx, both workers and the throwaway Redis, and the
    command exits 0. (A cluster of its own: the shared one stays up.)"""
    with cluster_process(redis_url) as running_cluster:
        stop_with_ctrl_c(running_cluster)


def stop_with_ctrl_c(running_cluster):
    proc = running_cluster.proc
    children = descendants(proc.pid)
    kinds = " ".join(children.values())
    assert kinds.count("daphne") == 2, children
    if NGINX:
        assert "nginx: master process" in kinds and "nginx: worker process" in kinds, children
    if running_cluster.own_redis:
        assert "redis-server" in kinds, children

    proc.send_signal(signal.SIGINT)
    assert proc.wait(30) == 0, running_cluster.output()
    running_cluster.reader.join(5)
    left = {pid: cmd for pid, cmd in children.items() if not gone(pid)}
    assert not left, f"still running after Ctrl-C: {left}"
    assert "Stopped (SIGINT)." in running_cluster.output()
    for port in [running_cluster.port, *running_cluster.worker_ports]:
        assert cluster.port_is_free("127.0.0.1", port), f"port {port} still taken"
