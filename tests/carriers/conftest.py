"""Fixtures for the carrier tests; the contract's harness lives in tests/carriers/harness.py."""
from __future__ import annotations

import pytest

from tests.admin.conftest import admin  # noqa: F401  (the signed-in merchant, for the carrier account pages)
from tests.carriers.harness import CASES, CarrierCase


@pytest.fixture(params=sorted(CASES))
def carrier(request) -> CarrierCase:
    """Each registered backend in turn, built by its factory in harness.CASES."""
    return CASES[request.param](request)
