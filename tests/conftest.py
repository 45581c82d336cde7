"""Markers by folder: unit/, service/, integration/, containers/."""

from __future__ import annotations

import pytest

_TIERS = ("unit", "service", "integration", "containers")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        for tier in _TIERS:
            if f"/tests/{tier}/" in str(item.path):
                item.add_marker(getattr(pytest.mark, tier))
