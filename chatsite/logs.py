"""Log lines that say when, how bad, where and which worker.

Daphne formats its own lines until Django's settings load; LOGGING then
replaces the root handler, so the format here is what every line gets
afterwards. Text by default; DJANGO_LOG_FORMAT=json for one JSON object per
line (what log collectors parse without rules).
"""

from __future__ import annotations

import json
import logging
import os
import socket
from datetime import UTC, datetime

# Standard LogRecord attributes: anything else on a record came from `extra=`.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "worker"}


def worker_id() -> str:
    """CHAT_WORKER_ID when the deployment names its workers, else host:pid."""
    return os.environ.get("CHAT_WORKER_ID", "").strip() or f"{socket.gethostname()}:{os.getpid()}"


class WorkerFilter(logging.Filter):
    """Adds `worker` to every record (read per record: a forked worker gets its own pid)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.worker = worker_id()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, worker,
    message, the `extra=` fields, and the traceback when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "worker": getattr(record, "worker", worker_id()),
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


TEXT_FORMAT = "%(asctime)s %(levelname)s [%(worker)s] %(name)s: %(message)s"


def logging_config(*, level: str, fmt: str) -> dict:
    """The LOGGING setting: one console handler in the chosen format."""
    formatter = {"()": JsonFormatter} if fmt == "json" else {"format": TEXT_FORMAT}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"worker": {"()": WorkerFilter}},
        "formatters": {"chosen": formatter},
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "formatter": "chosen",
                "filters": ["worker"],
            }
        },
        "root": {"handlers": ["console"], "level": level},
    }


def start_error_reporting(dsn: str, *, environment: str) -> None:
    """Errors (uncaught, and logged at ERROR) to Sentry, without personal data."""
    import sentry_sdk

    sentry_sdk.init(
        dsn=dsn,
        environment=environment,
        send_default_pii=False,
        traces_sample_rate=0.0,
    )
