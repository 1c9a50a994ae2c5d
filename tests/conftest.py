"""Shared fixtures: users and rooms, authenticated WebSocket communicators, a
real Redis (the configured one, or a throwaway redis-server started here), and
live Daphne processes for the browser and multi-worker tests."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid

import pytest
from asgiref.sync import sync_to_async
from channels.layers import channel_layers
from channels.testing import WebsocketCommunicator
from django.core.cache import caches
from django.core.cache.backends.locmem import LocMemCache
from django.core.management import call_command
from django.db import connections
from django.test import Client

from chat import hub, limits, presence, services, shutdown
from deploy.processes import free_port
from tests.servers import redis_server_url

TIMEOUT = 5  # seconds to wait for any one expected frame


@pytest.fixture(scope="session", autouse=True)
def collected_static_files():
    """Pages name static files by their hashed names (chatsite/storage.py),
    which only the manifest that collectstatic writes knows: with DEBUG off,
    as in tests and production, a template's {% static %} needs it."""
    call_command("collectstatic", interactive=False, verbosity=0)


@pytest.fixture(scope="session", autouse=True)
def close_sync_thread_connections(django_db_setup):
    """database_sync_to_async runs in asgiref's one sync thread, whose
    persistent connection (CONN_MAX_AGE) would outlive the tests: PostgreSQL
    then refuses to drop the test database."""
    yield
    asyncio.run(sync_to_async(connections.close_all)())


async def eventually(check, what: str, timeout: float = TIMEOUT):
    """Wait until `await check()` is truthy, and return it; AssertionError
    after `timeout` seconds. For state in a store (Redis, the database) that
    changes with no event a test can wait on: it is read again every 20 ms."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not (result := await check()):
        if loop.time() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout}s")
        await asyncio.sleep(0.02)  # the interval between reads, not synchronisation
    return result


async def eventually_off_loop(predicate, what: str, timeout: float = TIMEOUT):
    """`eventually` for a blocking `predicate()` (a synchronous Redis
    client's reads), run on a thread so the loop serves the sockets meanwhile."""
    return await eventually(lambda: asyncio.to_thread(predicate), what, timeout)


# ---------------------------------------------------------------- channel layers


def _reset_layers():
    if isinstance(caches["default"], LocMemCache):  # never FLUSHDB a shared Redis
        caches["default"].clear()  # throttle counters start at zero in every test
    channel_layers.backends.clear()
    presence.reset_store()
    hub.forget_hubs()
    limits.reset()
    shutdown.reset()


@pytest.fixture(autouse=True)
def fresh_layers(settings):
    """Every test starts with a fresh in-memory layer and presence store."""
    settings.CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels.layers.InMemoryChannelLayer", "CONFIG": {"capacity": 1000}}
    }
    settings.REDIS_URL = ""
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    _reset_layers()
    yield
    _reset_layers()


@pytest.fixture(scope="session")
def redis_url():
    """REDIS_URL when set, else a throwaway redis-server for this test run."""
    with redis_server_url() as url:
        yield url


@pytest.fixture
def redis_layer(settings, redis_url):
    """Channel layer, presence and cache on the real Redis, under a prefix of
    this test's own. Alias `worker2` is a second layer instance on the same
    Redis: a consumer on it behaves as one on another worker."""
    use_redis(settings, redis_url, prefix=f"t{uuid.uuid4().hex[:10]}")
    yield redis_url
    _reset_layers()


def use_redis(settings, redis_url: str, *, prefix: str) -> None:
    """Put this process's channel layer (aliases `default` and `worker2`),
    presence, limits and cache on `redis_url` under `prefix`, as a worker
    configured with REDIS_URL and CHAT_REDIS_PREFIX is (chatsite/settings.py)."""
    layer = {
        "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
        "CONFIG": {"hosts": [redis_url], "prefix": prefix},
    }
    settings.CHANNEL_LAYERS = {"default": layer, "worker2": layer}
    settings.REDIS_URL = redis_url
    settings.CHAT_REDIS_PREFIX = prefix
    settings.CACHES = {
        "default": {
            "BACKEND": "chat.cache.SharedPoolRedisCache",
            "LOCATION": redis_url,
            "KEY_PREFIX": prefix,
        }
    }
    _reset_layers()


@pytest.fixture
def redis_away(settings):
    """REDIS_URL and the cache on an address where nothing listens: the
    throttle counters, session copies, presence and socket counts fail as
    with Redis down (the channel layer stays in memory). The limits are on,
    so that a refusal would show."""
    dead = f"redis://127.0.0.1:{free_port()}/0"
    settings.REDIS_URL = dead
    settings.CACHES = {
        "default": {
            "BACKEND": "chat.cache.SharedPoolRedisCache",
            "LOCATION": dead,
            "OPTIONS": {"socket_timeout": 1, "socket_connect_timeout": 1},
        }
    }
    settings.CHAT_LOGIN_LIMIT_USER = (3, 900)
    settings.CHAT_SIGNUP_LIMIT_IP = (3, 900)
    settings.CHAT_SEARCH_RATE = (3, 60)
    _reset_layers()
    yield dead
    _reset_layers()


# ---------------------------------------------------------------- users and rooms


@pytest.fixture
def make_user(django_user_model):
    def make(username, password="a-long-test-password", **extra):
        return django_user_model.objects.create_user(username=username, password=password, **extra)

    return make


@pytest.fixture
def alice(make_user):
    return make_user("alice")


@pytest.fixture
def bob(make_user):
    return make_user("bob")


@pytest.fixture
def carol(make_user):
    return make_user("carol")


@pytest.fixture
def room(alice):
    return services.create_room(owner=alice, name="General")


@pytest.fixture
def private_room(alice):
    return services.create_room(owner=alice, name="Secret plans", is_private=True)


def session_cookie_for(user) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


@pytest.fixture
def make_member():
    """await make_member(name): a committed user with a logged-in session,
    for tests against live servers (tests/cluster/clients.py)."""
    from tests.cluster.clients import make_member

    return make_member


@pytest.fixture
def make_room():
    """await make_room(owner): a committed public room."""
    from tests.cluster.clients import make_room

    return make_room


# ---------------------------------------------------------------- communicators


class ChatSocket:
    """A WebsocketCommunicator that speaks JSON frames and waits for the frame
    it expects (with a timeout) instead of sleeping."""

    def __init__(self, communicator: WebsocketCommunicator):
        self.comm = communicator
        self.close_code = None
        self.backlog: list[dict] = []
        self.unbatched: list[dict] = []
        self.batches = 0  # `messages` frames received

    async def send(self, **frame):
        await self.comm.send_to(text_data=json.dumps(frame))

    async def send_raw(self, text=None, bytes_data=None):
        await self.comm.send_to(text_data=text, bytes_data=bytes_data)

    async def recv(self, timeout=TIMEOUT) -> dict:
        """The next frame. A `messages` batch (the server may batch under
        load) comes out as the `message` frames it stands for."""
        if self.unbatched:
            return self.unbatched.pop(0)
        message = await self.comm.receive_output(timeout)
        if message["type"] == "websocket.close":
            self.close_code = message.get("code")
            raise AssertionError(f"socket closed with {self.close_code}")
        frame = json.loads(message["text"])
        if frame["type"] == "messages":
            self.batches += 1
            self.unbatched = [{"type": "message", "message": m} for m in frame["messages"]]
            return self.unbatched.pop(0)
        return frame

    async def expect(self, kind: str, timeout=TIMEOUT, **match) -> dict:
        """The first frame of type `kind` (matching `match`). Frames skipped on
        the way are kept, in order, for later calls."""

        def matches(frame):
            return frame["type"] == kind and all(frame.get(k) == v for k, v in match.items())

        for frame in self.backlog:
            if matches(frame):
                self.backlog.remove(frame)
                return frame
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            remaining = deadline - loop.time()
            try:
                if remaining <= 0:
                    raise TimeoutError
                frame = await self.recv(remaining)
            except TimeoutError:
                raise AssertionError(
                    f"no {kind} frame {match or ''} within {timeout}s; saw {self.backlog}"
                ) from None
            if matches(frame):
                return frame
            self.backlog.append(frame)

    async def expect_closed(self, code: int, timeout=TIMEOUT):
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            message = await self.comm.receive_output(max(deadline - loop.time(), 0.01))
            if message["type"] == "websocket.close":
                assert message.get("code") == code, message
                return

    async def nothing(self, timeout=0.3) -> None:
        """Assert that no frame arrives (a bounded wait for an absence)."""
        assert not self.backlog, f"unread frames: {self.backlog}"
        assert await self.comm.receive_nothing(timeout), "expected no frame"

    async def close(self):
        await self.comm.disconnect()


CSRF_TOKEN = "t" * 32  # a CSRF secret of the right form, as cookie and header


async def post_frame(
    path: str, body: bytes, *, cookie: str, query: str = "", csrf_header: str | None = CSRF_TOKEN
) -> tuple[int, list]:
    """POST a frame beside an event stream through the whole ASGI stack, as
    the page does: `cookie` has the session; the CSRF cookie is CSRF_TOKEN,
    sent back as X-CSRFToken unless `csrf_header` says otherwise (None: no
    header). Returns the status and the answer's frames."""
    from channels.testing import ApplicationCommunicator

    from chatsite.asgi import application

    headers = [
        (b"cookie", f"{cookie}; csrftoken={CSRF_TOKEN}".encode()),
        (b"host", b"localhost"),
        (b"content-type", b"application/json"),
    ]
    if csrf_header is not None:
        headers.append((b"x-csrftoken", csrf_header.encode()))
    comm = ApplicationCommunicator(
        application,
        {
            "type": "http",
            "method": "POST",
            "path": path,
            "query_string": query.encode(),
            "headers": headers,
        },
    )
    await comm.send_input({"type": "http.request", "body": body, "more_body": False})
    start = await comm.receive_output(TIMEOUT)
    answer = b""
    while True:
        message = await comm.receive_output(TIMEOUT)
        answer += message.get("body", b"")
        if not message.get("more_body"):
            break
    # Let the request finish (request_finished gives its database
    # connection back) before the test's event loop may end.
    await comm.wait(TIMEOUT)
    return start["status"], json.loads(answer)


class StreamSocket:
    """The event-stream transport (chat.sse) behind ChatSocket's methods: the
    room's events from a streamed GET, frames sent as POSTs whose answers
    arrive among the events, a close frame where a WebSocket would close.
    `body` is the stream as it came, `comments` its comment lines."""

    def __init__(self, app, path: str, headers: list, post_path: str):
        from channels.testing import ApplicationCommunicator

        self.headers = headers
        self.post_path = post_path
        self.close_code = None
        self.backlog: list[dict] = []
        self.unbatched: list[dict] = []
        self.frames: asyncio.Queue = asyncio.Queue()
        self.comments: asyncio.Queue = asyncio.Queue()
        self.body = b""
        self.ended = asyncio.Event()  # the response's last body message came
        self.last_event_id: str | None = None
        path, _, query = path.partition("?")
        self.comm = ApplicationCommunicator(
            app,
            {
                "type": "http",
                "method": "GET",
                "path": path,
                "query_string": query.encode(),
                "headers": headers,
            },
        )
        self.conn = ""
        self.reader: asyncio.Task | None = None

    async def open(self):
        await self.comm.send_input({"type": "http.request", "body": b"", "more_body": False})
        start = await self.comm.receive_output(TIMEOUT)
        assert start["type"] == "http.response.start" and start["status"] == 200, start
        self.reader = asyncio.create_task(self._read())

    async def _read(self):
        pending = b""
        while True:
            message = await self.comm.receive_output(3600)
            self.body += message.get("body", b"")
            pending += message.get("body", b"")
            *events, pending = pending.split(b"\n\n")
            for event in events:
                for line in event.split(b"\n"):
                    if line.startswith(b"data: "):
                        await self._arrived(json.loads(line[6:]))
                    elif line.startswith(b"id: "):
                        self.last_event_id = line[4:].decode()
                    elif line.startswith(b":"):
                        await self.comments.put(line)
            if not message.get("more_body"):
                self.ended.set()
                await self.frames.put(None)
                return

    async def _arrived(self, frame: dict):
        if frame["type"] == "hello":
            self.conn = frame.get("conn", "")
        await self.frames.put(frame)

    async def send(self, **frame):
        await self.send_raw(json.dumps(frame))

    async def send_raw(self, text=None, bytes_data=None):
        assert bytes_data is None, "the event stream's frames are JSON text"
        session_cookie = next(v for k, v in self.headers if k == b"cookie").decode()
        status, frames = await post_frame(
            self.post_path,
            text.encode("utf-8", "surrogatepass"),
            cookie=session_cookie,
            query=f"conn={self.conn}",
        )
        assert status in (200, 401, 403), (status, frames)
        for frame in frames:
            await self._arrived(frame)

    async def recv(self, timeout=TIMEOUT) -> dict:
        if self.unbatched:
            return self.unbatched.pop(0)
        frame = await asyncio.wait_for(self.frames.get(), timeout)
        if frame is None or frame["type"] == "close":
            self.close_code = frame and frame["code"]
            raise AssertionError(f"stream closed with {self.close_code}")
        if frame["type"] == "messages":
            self.unbatched = [{"type": "message", "message": m} for m in frame["messages"]]
            return self.unbatched.pop(0)
        return frame

    expect = ChatSocket.expect

    async def expect_closed(self, code: int, timeout=TIMEOUT):
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            frame = await asyncio.wait_for(self.frames.get(), max(deadline - loop.time(), 0.01))
            if frame is None or frame["type"] == "close":
                assert frame is not None and frame["code"] == code, frame
                return

    async def nothing(self, timeout=0.3) -> None:
        assert not self.backlog, f"unread frames: {self.backlog}"
        with contextlib.suppress(TimeoutError):
            frame = await asyncio.wait_for(self.frames.get(), timeout)
            raise AssertionError(f"expected no frame, got {frame}")

    async def close(self):
        if self.reader is not None:
            self.reader.cancel()
        await self.comm.send_input({"type": "http.disconnect"})
        with contextlib.suppress(Exception):
            await self.comm.wait(1)


@pytest.fixture
def transport(request):
    """The transport a `connect` socket uses: the WebSocket, or for tests
    marked `both_transports` (and not `websocket_only`) each in turn."""
    return getattr(request, "param", "websocket")


def pytest_generate_tests(metafunc):
    definition = metafunc.definition
    if (
        "transport" in metafunc.fixturenames
        and definition.get_closest_marker("both_transports")
        and not definition.get_closest_marker("websocket_only")
    ):
        metafunc.parametrize("transport", ["websocket", "eventstream"], indirect=True)


@pytest.fixture
async def connect(transport):
    """connect(user, slug, after=None) -> (socket, hello, history) for an
    authenticated socket through the whole ASGI stack (origin check, session
    auth, routing), over the test's `transport`. Closes every socket at the
    end of the test."""
    from chat.routing import HttpRouter, websocket_application
    from chatsite.asgi import application, django_asgi_app

    opened: list = []

    async def open_socket(
        user,
        slug,
        after=None,
        *,
        origin="http://localhost",
        layer_alias=None,
        expect_hello=True,
        cookie=None,
        changes=None,
        headers=(),
    ):
        """`cookie`: a session id to use (default: a new session of `user`);
        `changes`: the `changes` query parameter ("" or a change number);
        `headers`: more request headers, as (bytes, bytes) pairs."""
        headers = [*headers, *([(b"origin", origin.encode())] if origin else [])]
        if user is not None or cookie is not None:
            cookie = cookie or await sync_to_async(session_cookie_for)(user)
            headers.append((b"cookie", f"sessionid={cookie}".encode()))
        params = [f"after={after}"] if after is not None else []
        if changes is not None:
            params.append(f"changes={changes}")
        query = "?" + "&".join(params) if params else ""
        if transport == "eventstream":
            app = HttpRouter(django_asgi_app, channel_layer_alias=layer_alias)
            headers.append((b"host", b"localhost"))
            socket = StreamSocket(app, f"/sse/rooms/{slug}/{query}", headers, f"/sse/rooms/{slug}/")
            await socket.open()
            socket.connected, socket.handshake_code = True, None
            opened.append(socket)
            if not expect_hello:
                return socket, None, None
            hello, history = await socket.recv(), await socket.recv()
            assert hello["type"] == "hello" and history["type"] == "history", (hello, history)
            return socket, hello, history
        path = f"/ws/rooms/{slug}/{query}"
        app = application
        if layer_alias:  # a consumer on another channel layer instance: "another worker"
            app = websocket_application(channel_layer_alias=layer_alias)
        comm = WebsocketCommunicator(app, path, headers=headers)
        connected, code = await comm.connect(TIMEOUT)
        socket = ChatSocket(comm)
        socket.connected, socket.handshake_code = connected, code
        opened.append(socket)
        if not (connected and expect_hello):
            return socket, None, None
        hello = await socket.recv()
        history = await socket.recv()
        assert hello["type"] == "hello" and history["type"] == "history", (hello, history)
        return socket, hello, history

    yield open_socket
    for socket in opened:
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await socket.close()
    await hub.stop_hubs()
