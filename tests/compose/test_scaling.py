"""docker compose up --scale web=3, used from outside through nginx on
127.0.0.1 the way people and pages use it: accounts over HTTP, sockets spread
over the replicas, exactly-once ordered fan-out and agreeing presence across
them, a replica killed mid-traffic without losing or repeating anything
acknowledged, the replica coming back and joining in, and the admin's
moderation reaching every replica. The last test shows that these checks fail
when a replica is not part of the fan-out (no REDIS_URL)."""

from __future__ import annotations

import asyncio
import re
import secrets
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from deploy.processes import wait_until

from .checks import (
    TIMEOUT,
    ResumingClient,
    Sockets,
    fan_out_problems,
    presence_problems,
)
from .stack import Replicas, docker, docker_ok, inspect, logs
from .web import Browser, Person, log_in, sign_up


def report(text: str) -> None:
    print(f"[compose-test] {text}", file=sys.stderr, flush=True)


def sign_up_people(stack, count: int, prefix: str) -> list[Person]:
    names = [f"{prefix}{i}{secrets.token_hex(2)}" for i in range(count)]
    password = secrets.token_urlsafe(12)
    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(lambda n: sign_up(stack.http, n, password), names))


def room_for(person: Person) -> str:
    return person.create_room(f"Room {secrets.token_hex(4)}")


def test_accounts_over_http_and_the_load_balancer_rules(stack):
    (person,) = sign_up_people(stack, 1, "acct")
    directory = person.browser.request("/")
    assert directory.status == 200 and person.name in directory.text

    again = log_in(stack.http, person.name, person.password)
    assert again.browser.cookie("sessionid") != person.browser.cookie("sessionid")
    wrong = Browser(stack.http)
    page = wrong.submit("/accounts/login/", {"username": person.name, "password": "not-it"})
    assert page.status == 200 and wrong.cookie("sessionid") is None

    # nginx's own answer, and its request body limit (1m).
    assert wrong.request("/lb-healthz").status == 200
    big = wrong.request("/accounts/login/", {"username": "x" * (2 * 1024 * 1024)})
    assert big.status == 413

    # X-Forwarded-For comes from nginx, not from the client: the replica logs
    # the address nginx saw, never the one a client claims.
    marker = f"/forwarded-{secrets.token_hex(4)}/"
    wrong.request(marker, headers={"X-Forwarded-For": "203.0.113.7"})
    lines = [line for c in stack.web() for line in logs(c).splitlines() if f"GET {marker}" in line]
    assert len(lines) == 1, lines
    assert not lines[0].startswith("203.0.113.7"), lines[0]
    assert re.match(r"\d+\.\d+\.\d+\.\d+:\d+ ", lines[0]), lines[0]

    # Every service's log is bounded.
    for container in stack.compose.containers(running=False):
        log_config = inspect(container)["HostConfig"]["LogConfig"]
        assert log_config["Type"] == "json-file" and log_config["Config"]["max-size"], log_config


async def test_sockets_spread_over_replicas_fan_out_once_in_order_and_presence_agrees(stack):
    replicas = stack.web()
    assert len(replicas) == 3
    people = await asyncio.to_thread(sign_up_people, stack, 6, "fan")
    slug = await asyncio.to_thread(room_for, people[0])
    sockets = Sockets(Replicas(stack), stack.ws, slug)
    try:
        for person in people:
            await sockets.open(person.member)
        counts = sockets.by_replica()
        report(f"6 sockets over the replicas: {sorted(counts.values())}")
        assert set(counts) == set(replicas), counts
        # least_conn: long-lived sockets spread by count.
        assert max(counts.values()) - min(counts.values()) <= 1, counts

        assert await presence_problems(sockets) == []
        assert await fan_out_problems(sockets, "fan") == []
    finally:
        await sockets.close()


async def test_a_killed_replica_loses_nothing_acknowledged_and_comes_back(stack):
    people = await asyncio.to_thread(sign_up_people, stack, 6, "kill")
    slug = await asyncio.to_thread(room_for, people[0])
    sockets = Sockets(Replicas(stack), stack.ws, slug)
    clients = [ResumingClient(p.member, sockets) for p in people]
    per_client = 12
    stop = asyncio.Event()
    keepers = []
    try:
        for client in clients:
            await client.connect()
        held = sockets.by_replica()
        assert len(held) == 3, held
        victim = max(held, key=held.get)
        on_victim = [c for c in clients if c.connections[0].replica == victim]
        keepers = [asyncio.create_task(c.stay_connected(stop)) for c in clients]

        kill_now = asyncio.Event()

        async def traffic(client: ResumingClient, first: bool):
            for k in range(per_client):
                await client.send(f"{client.member.name} #{k}", f"{client.member.name}-{k}")
                if first and k == 3:
                    kill_now.set()
                await asyncio.sleep(0.05)

        async def kill():
            await kill_now.wait()
            await asyncio.to_thread(docker, "kill", victim)
            return time.monotonic()

        *_, killed_at = await asyncio.gather(
            *(traffic(c, i == 0) for i, c in enumerate(clients)), kill()
        )

        def all_acked():
            for c in clients:
                c.collect_acks()
            return not any(c.pending for c in clients)

        await wait_for(all_acked, 30, "every message acknowledged")
        reconnected = [c.connections[1].client for c in on_victim if len(c.connections) > 1]
        report(
            f"killed {victim[:12]} holding {len(on_victim)} sockets; all acknowledged "
            f"{time.monotonic() - killed_at:.1f}s after the kill"
        )

        fence = clients[0]
        await fence.send("fence", "fence")

        def fence_acked():
            fence.collect_acks()
            return "fence" in fence.acks

        await wait_for(fence_acked, TIMEOUT, "the fence's ack")
        total = fence.acks["fence"]["seq"]
        for c in clients:
            await wait_for(lambda c=c: (c.last_seq() or 0) >= total, TIMEOUT, "the fence")
        stop.set()
        await asyncio.gather(*keepers)

        # The victim's clients came back through nginx on other replicas.
        assert len(reconnected) == len(on_victim), [len(c.connections) for c in on_victim]
        for c in on_victim:
            assert all(p.replica != victim for p in c.connections[1:]), c.member.name

        # Nothing acknowledged lost, nothing stored or delivered twice, one order.
        sent = {f"{p.name}-{k}": f"{p.name} #{k}" for p in people for k in range(per_client)}
        assert total == len(sent) + 1, f"{total} messages stored for {len(sent) + 1} sent"
        reference = [(m["seq"], m["id"], m["body"]) for m in clients[0].messages()]
        assert [seq for seq, _, _ in reference] == list(range(1, total + 1))
        for c in clients:
            got = [(m["seq"], m["id"], m["body"]) for m in c.messages()]
            assert got == reference, f"{c.member.name} lost, repeated or reordered messages"
        by_seq = {seq: (mid, body) for seq, mid, body in reference}
        for c in clients:
            for client_id, ack in c.acks.items():
                assert by_seq[ack["seq"]] == (ack["id"], sent.get(client_id, "fence")), client_id
        assert sorted(body for _, _, body in reference) == sorted([*sent.values(), "fence"])
        # What a newcomer reads from the database agrees.
        newcomer = await sockets.open(people[1].member, after=0)
        stored = [(m["seq"], m["id"], m["body"]) for m in newcomer.client.history["messages"]]
        assert stored == reference
    finally:
        stop.set()
        for task in keepers:
            task.cancel()
        await sockets.close()

    # Back to three: the killed replica starts again and joins the fan-out.
    started = time.monotonic()
    await asyncio.to_thread(
        stack.compose,
        "up",
        "-d",
        "--no-build",
        "--no-deps",
        "--no-recreate",
        "--scale",
        "web=3",
        "web",
    )
    replicas = await asyncio.to_thread(stack.wait_healthy, 3)
    report(f"scaled back to 3 replicas in {time.monotonic() - started:.0f}s")
    await check_every_replica_in_the_fan_out(stack, replicas, "back")


async def check_every_replica_in_the_fan_out(stack, replicas: list[str], tag: str) -> None:
    people = await asyncio.to_thread(sign_up_people, stack, 4, tag)
    slug = await asyncio.to_thread(room_for, people[0])
    sockets = Sockets(Replicas(stack), stack.ws, slug)
    try:
        await sockets.open_until_every_replica([p.member for p in people], replicas)
        assert sockets.holding() == set(replicas), sockets.by_replica()
        assert await presence_problems(sockets) == []
        assert await fan_out_problems(sockets, tag) == []
    finally:
        await sockets.close()


async def test_admin_moderation_reaches_sockets_on_every_replica(stack):
    password = secrets.token_urlsafe(12)
    await asyncio.to_thread(
        docker,
        "exec",
        "-e",
        f"DJANGO_SUPERUSER_PASSWORD={password}",
        stack.web()[0],
        "python",
        "manage.py",
        "createsuperuser",
        "--noinput",
        "--username",
        "moderator",
        "--email",
        "moderator@example.com",
    )
    moderator = await asyncio.to_thread(log_in, stack.http, "moderator", password, "/admin/login/")
    people = await asyncio.to_thread(sign_up_people, stack, 3, "mod")
    slug = await asyncio.to_thread(room_for, people[0])
    sockets = Sockets(Replicas(stack), stack.ws, slug)
    try:
        await sockets.open_until_every_replica([p.member for p in people], stack.web())
        assert len(sockets.holding()) == 3, sockets.by_replica()
        ack = await sockets.placed[0].client.send_message("spam", "spam")
        removed = await asyncio.to_thread(
            moderator.browser.submit,
            "/admin/chat/message/",
            {
                "action": "remove_messages",
                "index": "0",
                "_selected_action": [str(ack["id"])],
                "reason": "spam",
            },
        )
        assert removed.status == 200 and "/admin/chat/message/" in removed.url
        deleted = {"type": "message.deleted", "id": ack["id"], "seq": ack["seq"]}
        for p in sockets.placed:
            await p.client.wait(lambda c=p.client: deleted in c.frames, "message.deleted")
    finally:
        await sockets.close()


async def test_the_checks_fail_when_a_replica_has_no_redis(stack):
    """The negative check: one more `web` replica, reached by nginx like the
    others, but without REDIS_URL (so with an in-memory channel layer and
    presence of its own). The same checks as above must report it: its
    sockets see nobody else online and hear nobody type, and nobody elsewhere
    hears them. (Stored messages may still reach it, late, through each
    worker's watch of the rooms' last seq in the database.)"""
    model = inspect(stack.web()[0])
    env = [e for e in model["Config"]["Env"] if not e.startswith("REDIS_URL=")]
    network = next(iter(model["NetworkSettings"]["Networks"]))
    argv = ["run", "-d", "--init", "--network", network, "--network-alias", "web"]
    # In the project, so that `down --remove-orphans` takes it too.
    argv += ["--label", f"com.docker.compose.project={stack.compose.project}"]
    argv += [arg for e in env for arg in ("-e", e)]
    lonely = docker(*argv, model["Config"]["Image"], *model["Config"]["Cmd"]).strip()
    stack.extra.append(lonely)
    sockets = None
    try:
        await asyncio.to_thread(
            wait_until,
            lambda: docker_ok("exec", lonely, "python", "deploy/healthcheck.py"),
            60,
            "the replica without Redis to answer /healthz",
            0.5,
        )
        # /healthz says 200 on it all the same: only the fan-out shows it.
        people = await asyncio.to_thread(sign_up_people, stack, 4, "lonely")
        slug = await asyncio.to_thread(room_for, people[0])
        sockets = Sockets(Replicas(stack), stack.ws, slug)
        await sockets.open_until_every_replica([p.member for p in people], stack.web())
        assert lonely in sockets.holding(), "nginx never sent a socket to the extra replica"

        problems = await presence_problems(sockets, timeout=5)
        problems += await fan_out_problems(sockets, "lonely", timeout=5)
        report("negative check, what the checks found:\n  " + "\n  ".join(problems))
        on_lonely = [p for p in problems if lonely[:12] in p]
        assert any(p.startswith("presence") or "hello says" in p for p in on_lonely), problems
        assert any(p.startswith("fan-out (typing)") for p in on_lonely), problems
    finally:
        if sockets is not None:
            await sockets.close()
        docker("rm", "-f", lonely, check=False)
        stack.extra.remove(lonely)


async def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what}: not within {timeout}s"
        await asyncio.sleep(0.1)
