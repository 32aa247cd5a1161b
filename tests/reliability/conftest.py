"""The sink servers of the forwarding tests, for the SIGKILL series."""

from tests.forward.conftest import vm  # noqa: F401  (a fixture: pytest finds it by name)
