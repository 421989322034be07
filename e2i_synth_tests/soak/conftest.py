"""The `soak` marker: slow tests that run only with E2I_SOAK=1 (`make soak`)."""

from __future__ import annotations

import os

import pytest

SOAK_ENV = "E2I_SOAK"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"soak: slow reliability test, runs only with {SOAK_ENV}=1 (make soak)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get(SOAK_ENV) == "1":
        return
    skip = pytest.mark.skip(reason=f"soak test: set {SOAK_ENV}=1 or run `make soak`")
    for item in items:
        if item.get_closest_marker("soak"):
            item.add_marker(skip)
