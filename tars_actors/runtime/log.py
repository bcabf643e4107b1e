"""Structured logs: structlog configured once by run.py, with the stdlib loggers of pykka,
websockets, peewee, google-genai, httpx and twilio going through the same pipeline.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from typing import Any, TextIO

import structlog
from structlog.tracebacks import ExceptionDictTransformer
from structlog.typing import EventDict, Processor, WrappedLogger

__all__ = [
    "FORMATS",
    "LEVELS",
    "REDACTED",
    "SecretRedactor",
    "configure_logging",
    "get_logger",
    "reset_logging",
    "set_level",
]

LEVELS = ("debug", "info", "warning", "error", "critical")
FORMATS = ("json", "console", "auto")
REDACTED = "[REDACTED]"

# These write one DEBUG line per SQL query, frame or HTTP/2 header: kept at INFO even
# when TARS runs at debug, so its own debug lines stay readable and query parameters
# (phone numbers, message bodies) and audio frames stay out of the logs.
_CHATTY_LOGGERS = ("peewee", "websockets", "httpcore", "hpack", "urllib3")
# These write an INFO line per request or connection ("connection open", "HTTP response
# sent"); the server logs each call's own events with context instead.
_PER_REQUEST_LOGGERS = ("websockets.server", "httpx", "aiohttp.access")

# Handler names mark the handlers this module installed, so reconfiguring replaces
# exactly those and leaves others (pytest's capture handler, say) alone.
_HANDLER_PREFIX = "tars."

_FIRST_KEYS = ("timestamp", "level", "logger", "event")


class SecretRedactor:
    """A processor that replaces each secret by ``[REDACTED]`` wherever it appears.

    It walks the event, every field value (nested dicts, lists, tuples) and rendered
    exceptions, so it must run after exceptions are turned into text or dicts and before
    the renderer. Values of other types are checked through their ``repr``, which is
    what the renderers would print.
    """

    def __init__(self, secrets: Iterable[str]) -> None:
        # Longest first, so that a secret containing another is replaced whole.
        self._secrets = tuple(sorted({s for s in secrets if s}, key=len, reverse=True))

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
        if not self._secrets:
            return event_dict
        return {key: self.redact(value) for key, value in event_dict.items()}

    def redact(self, value: Any) -> Any:
        """``value`` with every secret replaced; containers come back as dicts and lists."""
        if isinstance(value, str):
            return self._redact_text(value)
        if value is None or isinstance(value, bool | int | float):
            return value
        if isinstance(value, Mapping):
            return {self.redact(k): self.redact(v) for k, v in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            return [self.redact(item) for item in value]
        text = repr(value)
        redacted = self._redact_text(text)
        return value if redacted is text else redacted

    def _redact_text(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text


def configure_logging(
    *,
    level: str = "info",
    format: str = "auto",
    file: str | None = None,
    secrets: Iterable[str] = (),
    stream: TextIO | None = None,
) -> None:
    """Route structlog and stdlib logging to ``stream`` (default stdout) and ``file``.

    ``format`` is ``json`` (one object per line), ``console`` (readable), or ``auto``:
    console when the stream is a terminal, else JSON. The file always gets JSON lines.
    Calling it again replaces the previous configuration.
    """
    numeric = _level_number(level)
    if format not in FORMATS:
        raise ValueError(f"[logging] format: {format!r} is not one of {', '.join(FORMATS)}")
    out = stream if stream is not None else sys.stdout
    console = format == "console" or (format == "auto" and _is_terminal(out))
    redactor = SecretRedactor(secrets)

    handlers: list[logging.Handler] = []
    stream_handler = logging.StreamHandler(out)
    stream_handler.set_name(f"{_HANDLER_PREFIX}stream")
    stream_handler.setFormatter(
        _formatter(console=console, colors=_is_terminal(out), redactor=redactor)
    )
    handlers.append(stream_handler)
    if file:
        try:
            file_handler = logging.FileHandler(file, encoding="utf-8")
        except OSError as error:
            raise ValueError(f"[logging] file: cannot open {file!r}: {error.strerror}") from error
        file_handler.set_name(f"{_HANDLER_PREFIX}file")
        file_handler.setFormatter(_formatter(console=False, colors=False, redactor=redactor))
        handlers.append(file_handler)

    _remove_handlers()
    root = logging.getLogger()
    for handler in handlers:
        root.addHandler(handler)
    _apply_level(numeric)

    structlog.configure(
        processors=[
            # First, so a call below the level costs one isEnabledFor and nothing else.
            structlog.stdlib.filter_by_level,
            *_shared_processors(),
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        # Not cached: a module-level logger used before configure_logging (at import
        # time, say) would otherwise keep structlog's default configuration for good.
        cache_logger_on_first_use=False,
    )


def set_level(level: str) -> None:
    """Change the level at runtime (on SIGHUP, say), for TARS and the libraries alike."""
    _apply_level(_level_number(level))


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    """A structlog logger named ``name`` (``tars.router``...), typed for the stdlib pipeline."""
    return structlog.stdlib.get_logger(name)


def reset_logging() -> None:
    """Undo :func:`configure_logging`: for tests, which configure it many times."""
    _remove_handlers()
    logging.getLogger().setLevel(logging.WARNING)
    for name in _CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET)
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


def _shared_processors() -> list[Processor]:
    """What every line gets, whether written through structlog or a stdlib logger."""
    return [
        # Merged on the thread that logs: pykka's crash report runs on the actor's own
        # thread, so it carries the context that actor bound in on_start.
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


def _formatter(
    *, console: bool, colors: bool, redactor: SecretRedactor
) -> structlog.stdlib.ProcessorFormatter:
    render_exception: Processor
    renderer: Processor
    if console:
        # Exceptions become text before the redactor sees them; ConsoleRenderer would
        # otherwise format exc_info itself, after redaction.
        render_exception = structlog.processors.format_exc_info
        renderer = structlog.dev.ConsoleRenderer(colors=colors)
    else:
        # Without locals: they may hold secrets inside objects and whole audio buffers.
        render_exception = structlog.processors.ExceptionRenderer(
            ExceptionDictTransformer(show_locals=False)
        )
        renderer = structlog.processors.JSONRenderer(default=_json_default)
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            *_shared_processors(),
            structlog.stdlib.ExtraAdder(),
            _foreign_stack,
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            render_exception,
            redactor,
            _order_keys,
            renderer,
        ],
    )


def _foreign_stack(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    # A stdlib record carries its stack already formatted; StackInfoRenderer would
    # format the formatter's own stack instead.
    stack_info = event_dict.pop("stack_info", None)
    if isinstance(stack_info, str):
        event_dict["stack"] = stack_info
    return event_dict


def _order_keys(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    # Context fields are merged first; a reader scans for time, level and event first.
    ordered = {key: event_dict.pop(key) for key in _FIRST_KEYS if key in event_dict}
    ordered.update(event_dict)
    return ordered


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    structlog_repr = getattr(value, "__structlog__", None)
    if callable(structlog_repr):
        return structlog_repr()
    return repr(value)


def _apply_level(numeric: int) -> None:
    logging.getLogger().setLevel(numeric)
    for name in _CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(max(numeric, logging.INFO))
    for name in _PER_REQUEST_LOGGERS:
        logging.getLogger(name).setLevel(max(numeric, logging.WARNING))


def _level_number(level: str) -> int:
    name = str(level).lower()
    if name not in LEVELS:
        raise ValueError(f"[logging] level: {level!r} is not one of {', '.join(LEVELS)}")
    return logging.getLevelNamesMapping()[name.upper()]


def _remove_handlers() -> None:
    root = logging.getLogger()
    for handler in list(root.handlers):
        if (handler.get_name() or "").startswith(_HANDLER_PREFIX):
            root.removeHandler(handler)
            handler.close()


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or file-less stream
        return False
