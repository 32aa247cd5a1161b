"""The garbage collector's passes are counted and timed; settling freezes what is alive and spaces young passes."""

from __future__ import annotations

import gc

from gateway.runtime.gctime import GEN0_THRESHOLD, GcTime, settle


def test_collections_are_counted_and_timed_per_generation():
    spent = GcTime()
    spent.install()
    try:
        gc.collect(0)
        gc.collect(2)
        cycles = []
        for _ in range(300):  # garbage only the collector frees, and that takes it a while
            a: list = [list(range(50))]
            a.append(a)
            cycles.append(a)
        del cycles, a
        gc.collect(2)
    finally:
        spent.remove()
    assert spent.collections[0] >= 1 and spent.collections[2] >= 2
    assert spent.seconds[2] > 0
    summary = spent.summary()
    assert summary["collections"] == spent.collections and len(summary["seconds"]) == 3
    gc.collect(2)
    assert spent.collections[2] == summary["collections"][2]  # removed: no longer counting


def test_settling_freezes_the_living_and_raises_the_young_threshold():
    before = gc.get_threshold()
    try:
        settle()
        assert gc.get_freeze_count() > 1000  # the interpreter, pytest and the gateway's modules
        assert gc.get_threshold()[0] == GEN0_THRESHOLD
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
