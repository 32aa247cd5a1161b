"""A sink that is failing: capped backoff, status fields, and a log that says so without flooding.

Both forwarders hold their cursor while their sink is away and retry, with
the gateway's one backoff (gateway/backoff.py: jitter, a cap, and a fresh
start once the sink has taken writes for a healthy period); this is what
they share about it. The first failure is logged at once, then at most one
line a minute while it lasts (with the retries so far), and the recovery once.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from gateway.backoff import Backoff

FIRST_DELAY_S = 0.5
LOG_EVERY_S = 60.0
RETRY_AFTER_MAX_S = 300.0  # a Retry-After is honoured up to this long


class Outage:
    def __init__(self, log: logging.Logger, sink: str, stats: dict[str, Any], backoff_max_s: float) -> None:
        self.log, self.sink, self.stats, self.backoff_max_s = log, sink, stats, backoff_max_s
        self._backoff = Backoff(min(FIRST_DELAY_S, backoff_max_s), backoff_max_s)
        self._log_at = 0.0
        self._last_logged = ""
        stats.update(connected=False, retries=0, last_error="", failing_since=None, retry_in_s=None)

    def failed(self, error: str, hint: str = "", retry_after: float | None = None) -> float:
        """Count a failed attempt; returns how long to wait before the next one."""
        st = self.stats
        delay = self._backoff.next()  # grows even while the sink says when: its next silence waits longer
        wait = min(retry_after, RETRY_AFTER_MAX_S) if retry_after is not None else delay
        now = time.time()
        if st["failing_since"] is None:
            st["failing_since"] = now
        st.update(connected=False, retries=st["retries"] + 1, last_error=error[:300], retry_in_s=round(wait, 3))
        if error != self._last_logged or time.monotonic() >= self._log_at:
            # A sink refusing this gateway (bad token, missing bucket) needs a person: an error, not a warning.
            self.log.log(logging.ERROR if hint else logging.WARNING,
                         "%s: %s%s; holding the outbox, retrying in %.1f s (failing for %.0f s, %d retries)",
                         self.sink, error, f" ({hint})" if hint else "", wait, now - st["failing_since"],
                         st["retries"])
            self._last_logged = error
            self._log_at = time.monotonic() + LOG_EVERY_S
        return wait

    def recovered(self) -> None:
        st = self.stats
        if st["failing_since"] is not None:
            self.log.info("%s: delivering again after %.0f s; catching up from the outbox",
                          self.sink, time.time() - st["failing_since"])
        self._backoff.healthy()  # a sink that fails again soon keeps backing off
        self._last_logged = ""
        st.update(connected=True, failing_since=None, retry_in_s=None)
