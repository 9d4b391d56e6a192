"""Logs for people and for log pipelines: one handler, text or JSON, without kopf's per-handler noise.

kopf logs ``Handler 'x' succeeded.`` and ``Updating is processed: 1 succeeded; 0 failed.`` at INFO
for every handler call: on a fleet that is nearly every INFO line, and says nothing a person acts
on. Those lines are demoted to DEBUG here (the records are rewritten, not dropped, so
``--verbose`` still shows them), leaving INFO for the transitions the controllers log (pod
created, GPU blocked, share changed, rollout started/succeeded/rolled back, release halted).

kopf attaches the object a record is about as ``record.k8s_ref``; both formats name it.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any, Final, Literal, TextIO

LogFormat = Literal["text", "json"]
LOG_FORMATS: Final = ("text", "json")

#: kopf's bookkeeping lines: logged at INFO once per handler call or processing cycle.
_KOPF_NOISE: Final = (
    re.compile(r"^Handler '.*' succeeded\.$"),
    re.compile(r"^(Creation|Updating|Deletion|Resuming|Resumption|Spawning) is processed: "),
    re.compile(r"^.* is superseded by .*: "),
    re.compile(r"^Timer '.*' succeeded\.$"),
    re.compile(r"^Activity '.*' succeeded\.$"),
    re.compile(r"^Daemon '.*' (succeeded|has exited)"),
)
_KOPF_LOGGERS: Final = ("kopf.objects", "kopf._core", "kopf.activities")

#: The attribute our JSON handler reads for extra structured fields (``logger.info(..., extra=...)``).
_STANDARD_ATTRS: Final = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


def is_kopf_noise(record: logging.LogRecord) -> bool:
    """True for kopf's per-handler success and per-cycle "is processed" lines."""
    if record.levelno != logging.INFO or not record.name.startswith("kopf"):
        return False
    message = record.getMessage()
    return any(p.match(message) for p in _KOPF_NOISE)


class DemoteKopfNoise(logging.Filter):
    """Rewrite kopf's bookkeeping INFO lines to DEBUG, then let the handler's level decide."""

    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        if is_kopf_noise(record):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return record.levelno >= self.level


def object_of(record: logging.LogRecord) -> str | None:
    """``Kind namespace/name`` of the object a kopf record is about, if any."""
    ref = getattr(record, "k8s_ref", None)
    if not isinstance(ref, dict) or not ref.get("name"):
        return None
    where = f"{ref['namespace']}/{ref['name']}" if ref.get("namespace") else str(ref["name"])
    return f"{ref.get('kind') or 'object'} {where}"


class TextFormatter(logging.Formatter):
    """``2026-01-01T00:00:00Z INFO gpufleet.x: [InferenceNode fleet/a] message``."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        obj = object_of(record)
        prefix = f"[{obj}] " if obj else ""
        line = f"{stamp} {record.levelname} {record.name}: {prefix}{record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, object fields and ``extra=`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        ref = getattr(record, "k8s_ref", None)
        if isinstance(ref, dict):
            doc["object"] = {k: ref[k] for k in ("kind", "namespace", "name") if ref.get(k)}
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and not key.startswith("k8s_") and key not in doc:
                doc[key] = value if isinstance(value, str | int | float | bool | None) else str(value)
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False)


def configure_logging(level: int, fmt: LogFormat = "text", stream: TextIO | None = None) -> logging.Handler:
    """Install the one root handler ``gpufleet run`` logs through; returns it (tests remove it)."""
    if fmt not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}, got {fmt!r}")
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(DemoteKopfNoise(level))
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_gpufleet", False)]:
        root.removeHandler(old)
    handler._gpufleet = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    # kopf's noise is INFO, so it passes the logger level and is demoted (and dropped) by the filter.
    root.setLevel(level)
    # The process's logging is ours: levels left on our and kopf's loggers (any of them) by whoever
    # ran before in this process (the demo silences "kopf" and "gpufleet", test harnesses quiet
    # "gpufleet.rollout") must not hide the transitions.
    owned = ("kopf", "gpufleet")
    names = [n for n in list(logging.root.manager.loggerDict) if n.split(".")[0] in owned]
    for name in {*owned, *_KOPF_LOGGERS, *names}:
        logging.getLogger(name).setLevel(logging.NOTSET)
    for noisy in ("aiohttp.access", "asyncio", "urllib3"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
    return handler
