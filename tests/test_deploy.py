"""Deployment: the compose file and image (structurally: no Docker engine is
needed; tests/compose/ runs them for real), the load balancer's configuration
(one generator for compose and the cluster command, checked by nginx itself and
run in front of a real upstream), and the production settings. The cluster
command has tests/test_cluster.py."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import secrets
import signal
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from deploy import nginx
from deploy.management.commands.cluster import nginx_user
from deploy.processes import find_nginx, free_port, nginx_error_log_args, nginx_version
from tests.servers import ROOT, answers, run_python, wait_until

NGINX = find_nginx()
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
    # Bounded logs everywhere: nginx's access log alone would fill a disk.
    for name, service in services.items():
        options = service.get("logging", {}).get("options", {})
        assert service["logging"]["driver"] == "json-file", name
        assert options.get("max-size") and options.get("max-file"), name


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
    # Liveness: a database or Redis blip must not mark every replica unhealthy.
    exit_code, probes = run_healthcheck(answer=200)
    assert exit_code == 0 and [path for path, _ in probes] == ["/livez"]

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
        # No password in the URL (nothing to escape): libpq takes PGPASSWORD,
        # the same required variable the database is initialized with.
        assert env["DATABASE_URL"] == f"postgres://chat@{db_name}:5432/chat"
        assert re.fullmatch(r"\$\{POSTGRES_PASSWORD:\?.+\}", env["PGPASSWORD"])
        assert env["REDIS_URL"] == f"redis://{redis_name}:6379/0"
        assert "DJANGO_TLS" in env
    assert "pgdata" in spec["volumes"]
    db = services[db_name]["environment"]
    assert db["POSTGRES_PASSWORD"] == migrate["environment"]["PGPASSWORD"], "required, no default"
    assert "--proxy-headers" in command_text(web), "the client address from nginx's header"


class RecordingWorker(BaseHTTPRequestHandler):
    """Stands in for the worker a healthcheck probes: answers every GET with
    the server's `status` and records (path, Host) in its `probes`."""

    def do_GET(self):
        self.server.probes.append((self.path, self.headers["Host"]))
        self.send_response(self.server.status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def run_healthcheck(*, answer: int, allowed_hosts: str = "") -> tuple[int, list[tuple[str, str]]]:
    """deploy/healthcheck.py against a worker answering `answer`: its exit
    code and the (path, Host) of every request it made."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), RecordingWorker)
    server.status, server.probes = answer, []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        env = {"PORT": str(server.server_address[1]), "DJANGO_ALLOWED_HOSTS": allowed_hosts}
        done = run_python("deploy/healthcheck.py", env=env, timeout=30)
    finally:
        server.shutdown()
        server.server_close()
    return done.returncode, server.probes


@pytest.mark.parametrize(
    "allowed_hosts, host", [("chat.example.com,localhost", "chat.example.com"), ("", "localhost")]
)
def test_the_web_healthcheck_probes_liveness_with_an_allowed_host(allowed_hosts, host):
    exit_code, probes = run_healthcheck(answer=200, allowed_hosts=allowed_hosts)
    assert (exit_code, probes) == (0, [("/livez", host)])
    unhealthy, _ = run_healthcheck(answer=503, allowed_hosts=allowed_hosts)
    assert unhealthy == 1


def test_compose_load_balancer_publishes_a_port_and_proxies_websockets_to_web():
    services = compose()["services"]
    _, lb = service_with_image(services, "nginx")
    assert lb["image"].startswith("nginx:1.28"), "the stable line"
    assert lb["ports"] == ["${CHAT_BIND:-127.0.0.1}:${CHAT_PORT:-8000}:80"]
    mounts = {v.split(":")[0]: v.split(":")[1] for v in lb["volumes"]}
    assert mounts["./deploy/nginx.conf"] == "/etc/nginx/nginx.conf"
    # The balancer's own liveness: one replica down must not make it unhealthy.
    assert "/lb-healthz" in " ".join(lb["healthcheck"]["test"])

    conf = (ROOT / "deploy" / "nginx.conf").read_text()
    assert_proxies_websockets(conf)
    assert "listen 80" in directives(nginx_block(conf, "server {"))
    assert "return 200" in " ".join(directives(nginx_block(conf, "location = /lb-healthz")))
    upstream = directives(nginx_block(conf, "upstream chat_workers"))
    # Every replica of `web`, followed through Docker's DNS as they come and
    # go; counts and failures shared by nginx's workers; sockets by count.
    assert any(d.startswith("zone chat_workers ") for d in upstream), upstream
    assert "least_conn" in upstream
    assert any(d.startswith("server web:8000 resolve") for d in upstream), upstream
    assert any(d.startswith("keepalive ") for d in upstream), upstream
    assert any(d.startswith("resolver 127.0.0.11") for d in directives(conf))


def test_compose_nginx_conf_is_the_generated_one():
    assert (ROOT / "deploy" / "nginx.conf").read_text() == nginx.render(nginx.compose_topology()), (
        "deploy/nginx.conf was edited by hand: change deploy/nginx.py and run `make nginx-conf`"
    )


def cluster_conf(workdir: Path, ports=(2, 3), listen="127.0.0.1:1") -> str:
    topology = nginx.cluster_topology(workdir=workdir, listen=listen, ports=list(ports), user=None)
    return nginx.render(topology)


@pytest.mark.parametrize("which", ["compose", "cluster"])
def test_both_configurations_route_alike(which, tmp_path):
    """Only where the workers are and how nginx runs differ: every location,
    header and limit is the same in both."""
    conf = (
        (ROOT / "deploy" / "nginx.conf").read_text()
        if which == "compose"
        else cluster_conf(tmp_path)
    )
    assert_proxies_websockets(conf)
    http = directives(nginx_block(conf, "http {"))
    assert f"client_max_body_size {nginx.BODY_LIMIT}" in http
    locations = ["location /ws/", "location /sse/", "location / {"]
    for location in locations:
        block = directives(nginx_block(conf, location))
        assert "proxy_set_header X-Forwarded-For $remote_addr" in block, location
        assert "proxy_pass http://chat_workers" in block, location
    sse = directives(nginx_block(conf, "location /sse/"))
    assert "proxy_buffering off" in sse and "proxy_read_timeout 1h" in sse
    compose_server = nginx_block((ROOT / "deploy" / "nginx.conf").read_text(), "server {")
    assert (
        nginx_block(conf, "server {").split("location", 1)[1]
        == compose_server.split("location", 1)[1]
    )


@needs_nginx
@pytest.mark.parametrize("which", ["compose", "cluster"])
def test_nginx_accepts_the_configurations(which, tmp_path):
    conf = tmp_path / "nginx.conf"
    if which == "compose":
        if nginx_version(NGINX) < (1, 27, 3):
            pytest.skip(
                f"nginx {nginx_version(NGINX)} here; `server ... resolve` needs 1.27.3 "
                "(`make compose-test` runs it in the lb image)"
            )
        conf.write_text((ROOT / "deploy" / "nginx.conf").read_text().replace("user nginx;", ""))
    else:
        conf.write_text(cluster_conf(tmp_path))
    result = nginx_test(conf, tmp_path)
    assert result.returncode == 0, result.stderr


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
    # The dependency layer installs the app's lock file (tests/test_locks.py
    # checks that it covers pyproject's dependencies), hashes checked.
    assert re.search(r"^COPY requirements/lock\.txt requirements/lock\.txt$", text, re.M)
    assert re.search(r"^RUN pip install --require-hashes -r requirements/lock\.txt", text, re.M)
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", "db.sqlite3*", "staticfiles"} <= set(ignored)
    assert "deploy" not in ignored  # the healthcheck script is in the image


def nginx_test(conf: Path, prefix: Path) -> subprocess.CompletedProcess:
    extra = f"pid {prefix}/nginx.pid;" if "pid " not in conf.read_text() else ""
    if os.geteuid() == 0 and "user " not in conf.read_text():
        extra += f" user {nginx_user()};"
    argv = [NGINX, "-t", "-p", str(prefix), "-c", str(conf), *nginx_error_log_args(NGINX)]
    if extra:
        argv += ["-g", extra]
    return subprocess.run(argv, capture_output=True, text=True, timeout=30)


class Upstream(BaseHTTPRequestHandler):
    """Stands in for a worker (the /sse/ endpoint does not exist yet): echoes
    the headers it got, and streams three events a second apart on /sse/."""

    def do_GET(self):
        if self.path.startswith("/sse/"):
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            for i in range(3):
                self.wfile.write(f"data: {i}\n\n".encode())
                self.wfile.flush()
                threading.Event().wait(1)
            return
        body = json.dumps(dict(self.headers)).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def nginx_in_front_of(upstream_port: int, tmp_path: Path):
    """nginx with the cluster's generated configuration, on a free port."""
    port = free_port()
    workdir = tmp_path / "nginx"
    workdir.mkdir()
    if os.geteuid() == 0:
        os.chmod(tmp_path, 0o755)
        os.chmod(workdir, 0o755)
    conf = workdir / "nginx.conf"
    conf.write_text(cluster_conf(workdir, ports=[upstream_port], listen=f"127.0.0.1:{port}"))
    if os.geteuid() == 0:
        conf.write_text(
            conf.read_text().replace("daemon off;", f"daemon off; user {nginx_user()};")
        )
    proc = subprocess.Popen(
        [NGINX, "-p", str(workdir), "-c", str(conf), *nginx_error_log_args(NGINX)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        wait_until(
            lambda: proc.poll() is not None or answers(f"http://127.0.0.1:{port}/lb-healthz"),
            20,
            "nginx",
        )
        assert proc.poll() is None, proc.stderr.read().decode()
        yield port
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)


@needs_nginx
def test_load_balancer_streams_events_sets_the_client_address_and_limits_bodies(tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with nginx_in_front_of(server.server_address[1], tmp_path) as port:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            # A client's own X-Forwarded-For is replaced by the address nginx saw.
            connection.request("GET", "/echo", headers={"X-Forwarded-For": "203.0.113.7"})
            echoed = json.loads(connection.getresponse().read())
            assert echoed["X-Forwarded-For"] == "127.0.0.1"
            assert echoed["Host"] == f"127.0.0.1:{port}"

            # Over the body limit: refused by nginx itself.
            connection.request("POST", "/form", body=b"x" * (2 * 1024 * 1024))
            refused = connection.getresponse()
            refused.read()
            assert refused.status == 413

            # Server-Sent Events: the first event arrives while the upstream is
            # still writing (buffered, all three would come at the end, ~2 s).
            stream = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            stream.request("GET", "/sse/rooms/x/")
            response = stream.getresponse()
            assert response.readline() == b"data: 0\n"
            first_at = time.monotonic()
            rest = response.read()
            assert time.monotonic() - first_at > 1.5, "the first event came only with the last"
            assert rest.count(b"data: ") == 2
    finally:
        server.shutdown()
        server.server_close()


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


IPTABLES_SAVED = """# Generated by iptables-save v1.8.9 on Sat Dec  5 07:00:00 2026
*filter
:INPUT ACCEPT [12:34]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [5:6]
-A INPUT -i lo -j ACCEPT
COMMIT
# Completed on Sat Dec  5 07:00:00 2026
"""


def test_the_compose_tests_host_check_sees_what_a_dockerd_left_and_nothing_else():
    """tests/compose/engine.py fails the compose run when the host is not as
    it was before its dockerd (no Docker needed to check the comparison)."""
    from tests.compose.engine import HostState

    before = HostState(
        sysctls={"net.ipv4.ip_forward": "0"},
        rules={"iptables": IPTABLES_SAVED},
        links={"lo", "eth0"},
    )
    # Saved again later: other timestamps and counters, and an emptied table
    # the dockerd made (iptables cannot always remove it): the same host.
    put_back = HostState(
        sysctls={"net.ipv4.ip_forward": "0"},
        rules={
            "iptables": IPTABLES_SAVED.replace("07:00:00", "07:05:00").replace("[12:34]", "[99:9]")
            + "*nat\n:PREROUTING ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\nCOMMIT\n"
        },
        links={"lo", "eth0", "tap0"},  # not a link of dockerd's
    )
    assert before.differences(put_back) == []
    left = HostState(
        sysctls={"net.ipv4.ip_forward": "1"},
        rules={"iptables": IPTABLES_SAVED.replace(":FORWARD ACCEPT", ":FORWARD DROP")},
        links={"lo", "eth0", "docker0"},
    )
    assert before.differences(left) == [
        "iptables rules differ",
        "net.ipv4.ip_forward=1, was 0",
        "link docker0 left",
    ]
