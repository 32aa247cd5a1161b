"""The command rate limiter: per caller and per machine, over a sliding minute, refusals audited once a minute."""

from __future__ import annotations

import pytest

from gateway.api.ratelimit import Limiter


def test_the_limiter_counts_per_caller_and_per_machine_over_a_sliding_minute():
    lim = Limiter(per_caller=2, per_machine=3)
    assert lim.take("a", "m1", now=0.0) is None and lim.take("a", "m2", now=1.0) is None
    why, wait = lim.take("a", "m1", now=2.0)
    assert "user 'a' had 2 commands" in why and wait == pytest.approx(58.0)
    assert lim.take("b", "m1", now=3.0) is None and lim.take("c", "m1", now=4.0) is None
    why, _ = lim.take("d", "m1", now=5.0)  # m1 took 3 (a, b, c): the machine's limit, whoever asks
    assert "machine m1 had 3 commands" in why
    assert lim.take("a", "m2", now=60.5) is None  # a's first command left the window
    assert lim.first_refusal("a", "m1", now=0.0) and not lim.first_refusal("a", "m1", now=30.0)
    assert lim.first_refusal("a", "m1", now=61.0)
