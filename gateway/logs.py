"""Logging set-up for the linegw process, in one place.

asyncua logs its session requests at INFO, user-token password included;
its loggers are held at WARNING so that no secret reaches a plant's logs.
"""

from __future__ import annotations

import logging

QUIET = ("asyncua", "pymodbus", "uvicorn.access")


def configure(level: str = "info") -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)
