"""Refusals of the write services, each carrying how every door reports it:
the contract's error code (WebSocket `error` frame), the HTTP status (room
page endpoints) and, where the refusal ends a socket, its close code."""

from __future__ import annotations

from typing import Any

from ..events import Close


class ServiceError(Exception):
    """A refused write; nothing changed. `fields` go into the error frame
    beside the code (retry_after, until)."""

    code = "bad_request"
    http_status = 400
    close_code: int | None = None  # a socket that gets this refusal is closed

    def __init__(self, detail: str, **fields: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.fields = fields


class InvalidInput(ServiceError):
    code = "bad_request"


class RateLimited(ServiceError):
    code = "rate_limited"
    http_status = 429


class Muted(ServiceError):
    code = "muted"
    http_status = 403


class Locked(ServiceError):
    code = "locked"
    http_status = 403


class Forbidden(ServiceError):
    code = "forbidden"
    http_status = 403
    close_code = Close.NO_ACCESS  # e.g. a send racing a ban: the socket has no access left


class NotFound(ServiceError):
    """No such thing for this actor: the same answer whether it does not exist
    or is out of the actor's reach, so that nothing can be probed."""

    code = "not_found"
    http_status = 404
