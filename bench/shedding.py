#!/usr/bin/env python3
"""Load shedding on a CPU-starved worker: does latency recover while the load
lasts? Two Daphne workers; every reader is on the first, every sender on the
second. The first is starved of CPU (stopped and continued in a duty cycle,
so that it gets a fixed share of one core) while senders keep up a steady
rate. The same run is made with shedding on (CHAT_SHED_LAG, default 2 s) and
off, and prints, per span of send time, the latency readers saw
(docs/performance.md).

    .venv/bin/python bench/shedding.py [--readers 200 --senders 10 --rate 2.5 --share 0.2]

It starts its own workers on a fresh SQLite file and the Redis at REDIS_URL
(default 127.0.0.1:6379), and stops them at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import threading
import time

from transports import (
    ROOM,
    Readiness,
    log_in_readers,
    prepare,
    start_workers,
    stop_workers,
    websocket_reader,
)
from websockets.asyncio.client import connect

SPANS = 4


class Timeline:
    """Latency of each delivery, keyed by when the message was sent."""

    def __init__(self):
        self.samples: list[tuple[float, float]] = []  # (sent at, latency ms)
        self.started_ns = 0

    def record(self, frame: dict) -> None:
        kind = frame.get("type")
        if kind not in ("message", "messages"):
            return
        messages = [frame["message"]] if kind == "message" else frame["messages"]
        now = time.perf_counter_ns()
        for message in messages:
            sent = message["body"].rsplit(":", 1)[-1]
            if sent.isdigit() and int(sent) >= self.started_ns:
                self.samples.append(((int(sent) - self.started_ns) / 1e9, (now - int(sent)) / 1e6))


class Starver(threading.Thread):
    """Gives a process `share` of the CPU: SIGSTOP and SIGCONT in 100 ms
    cycles (what cpulimit does)."""

    def __init__(self, pid: int, share: float):
        super().__init__(daemon=True)
        self.pid, self.share = pid, share
        self.stopped = threading.Event()

    def run(self):
        period = 0.1
        while not self.stopped.is_set():
            os.kill(self.pid, signal.SIGSTOP)
            time.sleep(period * (1 - self.share))
            os.kill(self.pid, signal.SIGCONT)
            time.sleep(period * self.share)

    def stop(self):
        self.stopped.set()
        self.join()
        os.kill(self.pid, signal.SIGCONT)


async def run_load(args, ports, cookies, starved_pid: int) -> list[dict]:
    timeline = Timeline()
    ready = Readiness(args.readers)

    reader_port, sender_port = ports
    readers = [
        asyncio.create_task(
            websocket_reader(
                f"ws://127.0.0.1:{reader_port}/ws/rooms/{ROOM}/",
                cookies[i % len(cookies)],
                f"http://127.0.0.1:{reader_port}",
                timeline,
                ready,
            )
        )
        for i in range(args.readers)
    ]
    await asyncio.wait_for(ready.all_in.wait(), 60)
    senders = [
        await connect(
            f"ws://127.0.0.1:{sender_port}/ws/rooms/{ROOM}/",
            additional_headers={"Cookie": cookies[i % len(cookies)]},
            origin=f"http://127.0.0.1:{sender_port}",
        )
        for i in range(args.senders)
    ]
    await asyncio.sleep(1)  # every reader's hello and history first (as transports.py)
    starver = Starver(starved_pid, args.share)
    timeline.started_ns = time.perf_counter_ns()
    starver.start()
    started = time.perf_counter()
    sent = 0
    try:
        while time.perf_counter() - started < args.duration:
            for n, ws in enumerate(senders):
                body = f"shed:{n}:{time.perf_counter_ns()}"
                await ws.send(json.dumps({"type": "message.send", "body": body, "client_id": body}))
                sent += 1
            await asyncio.sleep(1 / args.rate)
        # What is still owed arrives at the starved pace; wait a while for it.
        expected = sent * args.readers
        deadline = time.perf_counter() + args.duration
        while len(timeline.samples) < expected and time.perf_counter() < deadline:
            await asyncio.sleep(0.1)
    finally:
        starver.stop()
    closed = [task for task in readers if task.done()]
    for task in readers:
        task.cancel()
    for ws in senders:
        await ws.close()
    span = args.duration / SPANS
    rows = []
    for i in range(SPANS):
        window = sorted(ms for at, ms in timeline.samples if i * span <= at < (i + 1) * span)
        rows.append(
            {
                "sent during": f"{i * span:.0f}–{(i + 1) * span:.0f} s",
                "p50 ms": round(window[len(window) // 2]) if window else "-",
                "max ms": round(window[-1]) if window else "-",
            }
        )
    rows.append({"lost": expected - len(timeline.samples), "closed": len(closed)})
    print(f"sent {sent}, delivered {len(timeline.samples)}, readers closed {len(closed)}")
    return rows


def measure(args, shed_lag: str) -> list[dict]:
    env = prepare("shedding", CHAT_SHED_LAG=shed_lag)
    ports = [5700, 5701]
    workers = start_workers(env, ports)
    try:
        cookies = log_in_readers(ports[1])
        return asyncio.run(run_load(args, ports, cookies, workers[0].pid))
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGCONT)
        stop_workers(workers)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--readers", type=int, default=200)
    parser.add_argument("--senders", type=int, default=10)
    parser.add_argument("--rate", type=float, default=2.5, help="messages/s per sender")
    parser.add_argument("--share", type=float, default=0.2, help="CPU share of the reader worker")
    parser.add_argument("--duration", type=float, default=20)
    args = parser.parse_args()
    results = {"shedding on": measure(args, "2"), "shedding off": measure(args, "1000000")}
    print(f"\n| sent during | {' | '.join(f'{name}: p50 / max ms' for name in results)} |")
    print("|---|" + "---|" * len(results))
    for i in range(SPANS):
        cells = [f"{rows[i]['p50 ms']} / {rows[i]['max ms']}" for rows in results.values()]
        print(f"| {next(iter(results.values()))[i]['sent during']} | {' | '.join(cells)} |")
    print(f"| lost | {' | '.join(str(rows[-1]['lost']) for rows in results.values())} |")


if __name__ == "__main__":
    main()
