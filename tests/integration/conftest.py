"""Fixtures of the data-resource tests (test_data, test_interrupted_deploy)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.data_resources import KINDS, Features, feature_table, migration_cli
from tests.server import Cli


@pytest.fixture(params=KINDS)
def features(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Features]:
    with feature_table(request.param, request, tmp_path) as table:
        yield table


@pytest.fixture
def cli(home: Path, tmp_path: Path) -> Cli:
    return migration_cli(home, tmp_path)
