"""Fixtures of the store tests: each contract test runs once per store in tests/store/stores.py."""

from __future__ import annotations

import pytest

from tests.store.stores import STORES


@pytest.fixture(params=list(STORES))
def store_cls(request):
    return STORES[request.param]


@pytest.fixture
async def store(tmp_path, store_cls):
    s = store_cls(tmp_path / "store.sqlite")
    await s.start()
    yield s
    await s.close()
