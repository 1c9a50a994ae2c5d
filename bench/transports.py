#!/usr/bin/env python3
"""The cost of a delivery over the event stream (chat.sse) beside the
WebSocket's: the same load against the same workers, once with every reader
on a WebSocket, once with every reader on an event stream. Senders use
WebSockets both times. Prints one table (docs/performance.md).

    .venv/bin/python bench/transports.py [--workers 2 --readers 200 --senders 10 --rate 5]

It starts its own Daphne workers on a fresh SQLite file and the Redis at
REDIS_URL (default 127.0.0.1:6379), and stops them at the end. Like
../shared/bench/chatload.py (which it borrows from), it charges the workers'
CPU time to the deliveries.
"""

from __future__ import annotations

import argparse
import asyncio
import http.cookiejar
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

from websockets.asyncio.client import connect

ROOT = Path(__file__).resolve().parent.parent
ROOM = "transports"


def login(base: str, username: str, password: str) -> str:
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    page = opener.open(base + "/accounts/login/").read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)[1]
    form = {"username": username, "password": password, "csrfmiddlewaretoken": token}
    request = urllib.request.Request(
        base + "/accounts/login/",
        data=urllib.parse.urlencode(form).encode(),
        headers={"Referer": base + "/accounts/login/"},
    )
    opener.open(request).read()
    return "; ".join(f"{c.name}={c.value}" for c in jar)


def cpu_seconds(pids: list[int]) -> float:
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total


class Stats:
    def __init__(self):
        self.latencies: list[float] = []
        self.expected = 0

    def record(self, frame: dict) -> None:
        kind = frame.get("type")
        messages = [frame["message"]] if kind == "message" else frame.get("messages", [])
        if kind not in ("message", "messages"):
            return
        now = time.perf_counter_ns()
        for message in messages:
            sent = message["body"].rsplit(":", 1)[-1]
            if sent.isdigit():
                self.latencies.append((now - int(sent)) / 1e6)


async def websocket_reader(url: str, cookie: str, origin: str, stats: Stats, ready):
    async with connect(url, additional_headers={"Cookie": cookie}, origin=origin) as ws:
        ready()
        async for raw in ws:
            stats.record(json.loads(raw))


async def stream_reader(host: str, port: int, cookie: str, stats: Stats, ready):
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(
        (
            f"GET /sse/rooms/{ROOM}/ HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Cookie: {cookie}\r\nAccept: text/event-stream\r\n\r\n"
        ).encode()
    )
    await writer.drain()
    while (await reader.readline()) not in (b"\r\n", b""):
        pass  # status line and headers
    ready()
    pending = b""
    while True:
        size_line = await reader.readline()
        if not size_line:
            return
        size = int(size_line.strip() or b"0", 16)
        chunk = await reader.readexactly(size + 2)
        pending += chunk[:-2]
        *events, pending = pending.split(b"\n\n")
        for event in events:
            for line in event.split(b"\n"):
                if line.startswith(b"data: "):
                    stats.record(json.loads(line[6:]))


class Readiness:
    """Calling it counts a reader in; `all_in` is set when `expected` are."""

    def __init__(self, expected: int):
        self.expected, self.count = expected, 0
        self.all_in = asyncio.Event()

    def __call__(self) -> None:
        self.count += 1
        if self.count == self.expected:
            self.all_in.set()


async def run_load(args, servers, cookies, transport: str) -> dict:
    stats = Stats()
    ready = Readiness(args.readers)

    readers = []
    for i in range(args.readers):
        port = servers[i % len(servers)]
        cookie = cookies[i % len(cookies)]
        if transport == "websocket":
            url = f"ws://127.0.0.1:{port}/ws/rooms/{ROOM}/"
            job = websocket_reader(url, cookie, f"http://127.0.0.1:{port}", stats, ready)
        else:
            job = stream_reader("127.0.0.1", port, cookie, stats, ready)
        readers.append(asyncio.create_task(job))
    await asyncio.wait_for(ready.all_in.wait(), 60)
    senders = []
    for i in range(args.senders):
        port = servers[i % len(servers)]
        url = f"ws://127.0.0.1:{port}/ws/rooms/{ROOM}/"
        origin = f"http://127.0.0.1:{port}"
        senders.append(
            await connect(
                url, additional_headers={"Cookie": cookies[i % len(cookies)]}, origin=origin
            )
        )
    await asyncio.sleep(1)  # let every reader's hello and history pass before measuring
    stats.latencies.clear()
    cpu0 = cpu_seconds(args.pids)
    started = time.perf_counter()
    interval = 1 / args.rate
    sent = 0
    while time.perf_counter() - started < args.duration:
        for n, ws in enumerate(senders):
            body = f"{transport}:{n}:{time.perf_counter_ns()}"
            await ws.send(json.dumps({"type": "message.send", "body": body, "client_id": body}))
            sent += 1
        await asyncio.sleep(interval)
    expected = sent * args.readers
    deadline = time.perf_counter() + 10
    while len(stats.latencies) < expected and time.perf_counter() < deadline:
        await asyncio.sleep(0.05)
    cpu = cpu_seconds(args.pids) - cpu0
    for task in readers:
        task.cancel()
    for ws in senders:
        await ws.close()
    latencies = sorted(stats.latencies) or [float("nan")]
    return {
        "readers": transport,
        "sent": sent,
        "delivered": len(stats.latencies),
        "lost": expected - len(stats.latencies),
        "p50_ms": round(latencies[len(latencies) // 2], 1),
        "p99_ms": round(latencies[int(0.99 * (len(latencies) - 1))], 1),
        "cpu_ms_per_1k": round(1e6 * cpu / max(1, len(stats.latencies)), 1),
    }


PASSWORD = "a-long-bench-password"


def prepare(name: str, **settings: str) -> dict:
    """A fresh SQLite database with ten readers and the room: the workers'
    environment (settings: more environment variables)."""
    work = Path(tempfile.mkdtemp(prefix=f"chat-{name}-"))
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{work}/db.sqlite3",
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": "bench-only",
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "CHAT_RATE_LIMIT": "off",
        "CHAT_FRAME_RATE": "off",
        "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
        "CHAT_REDIS_PREFIX": work.name,  # unique: runs never share Redis keys
        **settings,
    }
    python = sys.executable
    subprocess.run([python, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    script = (
        "from django.contrib.auth import get_user_model\n"
        "from chat import services\n"
        "U = get_user_model()\n"
        f"users = [U.objects.create_user(f'reader{{i}}', password='{PASSWORD}') "
        "for i in range(10)]\n"
        f"services.create_room(owner=users[0], name='{ROOM}')\n"
    )
    subprocess.run([python, "manage.py", "shell", "-c", script], cwd=ROOT, env=env, check=True)
    return env


def start_workers(env: dict, ports: list[int]) -> list[subprocess.Popen]:
    """Daphne workers on `ports`, answering /livez when this returns."""
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port)]
            + ["chatsite.asgi:application"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for port in ports
    ]
    for port in ports:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/livez", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
    return workers


def stop_workers(workers: list[subprocess.Popen]) -> None:
    for worker in workers:
        worker.terminate()
    for worker in workers:
        worker.wait(15)


def log_in_readers(port: int) -> list[str]:
    base = f"http://127.0.0.1:{port}"
    return [login(base, f"reader{i}", PASSWORD) for i in range(10)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--readers", type=int, default=200)
    parser.add_argument("--senders", type=int, default=10)
    parser.add_argument("--rate", type=float, default=5.0, help="messages/s per sender")
    parser.add_argument("--duration", type=float, default=8)
    args = parser.parse_args()
    env = prepare("transports")
    ports = [5600 + i for i in range(args.workers)]
    workers = start_workers(env, ports)
    args.pids = [w.pid for w in workers]
    try:
        cookies = log_in_readers(ports[0])
        rows = [
            asyncio.run(run_load(args, ports, cookies, t)) for t in ("websocket", "eventstream")
        ]
    finally:
        stop_workers(workers)
    columns = list(rows[0])
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(str(row[c]) for c in columns) + " |")


if __name__ == "__main__":
    main()
