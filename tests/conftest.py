"""Shared fixtures: nothing here starts a server; see tests/services/conftest.py."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
