"""Logging set-up for the linegw process, in one place.

What an operator reads at the default level is the gateway's own account:
one line when a machine, the store or a sink changes state, with its ID and
the reason. The protocol libraries speak only at DEBUG:

* pymodbus appends its last 20 frames as hex dumps to every error it logs
  (a refused connection, a missing reply), which drowned a fault run's log;
  everything it would report, the Modbus adapter reports as the link's
  reason. It is silent unless the level is debug, and then its frames are
  debug lines of their own.
* asyncua logs its session requests at INFO, user-token password included;
  its loggers are held at WARNING even at debug so that no secret reaches a
  plant's logs, and at ERROR below debug (its warnings about a lost session
  are what the OPC UA adapter reports as the link's reason). Below debug, an
  error it still logs comes without its traceback: the exception's one line
  is kept.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from datetime import UTC, datetime

LIBRARIES = ("asyncua", "pymodbus")
QUIET = ("uvicorn.access",)


class LibraryOneLine(logging.Filter):
    """A library's record as one line: no traceback, no frame dump appended to the message."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(LIBRARIES):
            return True
        message = record.getMessage().split("\n>>>>>", 1)[0]  # pymodbus's frame dump
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            message = f"{message} ({type(exc).__name__}: {exc})" if str(exc) else f"{message} ({type(exc).__name__})"
        record.msg, record.args = message, None
        record.exc_info = record.exc_text = record.stack_info = None
        return True


class JsonLines(logging.Formatter):
    """One JSON object per record, for log collectors: time (UTC), level, logger, message, and `equipment`
    when the record is about one machine (the gateway's own lines start with the machine's ID)."""

    def __init__(self, equipment: Iterable[str] = ()) -> None:
        super().__init__()
        self.equipment = frozenset(equipment)

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname, "logger": record.name, "message": record.getMessage(),
        }
        args = record.args
        if isinstance(record.msg, str) and record.msg.startswith("%s: ") and isinstance(args, tuple) and args \
                and args[0] in self.equipment:
            out["equipment"] = args[0]
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


def configure(level: str = "info", fmt: str = "text", equipment: Iterable[str] = ()) -> None:
    """Levels and filters for the process; `fmt` "json" writes JSON lines (`equipment` names the machines)."""
    debug = level.upper() == "DEBUG"
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if fmt == "json":
        for handler in logging.getLogger().handlers:
            handler.setFormatter(JsonLines(equipment))
    logging.getLogger("pymodbus").setLevel(logging.DEBUG if debug else logging.CRITICAL + 1)
    # Its warnings ("close_session was called but connection is closed") are the adapter's link reasons.
    logging.getLogger("asyncua").setLevel(logging.WARNING if debug else logging.ERROR)
    for name in QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)
    if not debug:
        for handler in logging.getLogger().handlers:
            if not any(isinstance(f, LibraryOneLine) for f in handler.filters):
                handler.addFilter(LibraryOneLine())
