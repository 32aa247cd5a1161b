"""Fixtures for the simulator tests."""

from __future__ import annotations

import pytest

from interface_spec import Spec, load_spec


@pytest.fixture(scope="session")
def spec() -> Spec:
    return load_spec()
