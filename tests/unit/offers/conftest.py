"""The offers handler tests' harness: the runtime's batch path on SQLite, no broker."""

import pytest

from tests.builders.services import OFFERS as SERVICE
from tests.harness import Harness


@pytest.fixture
def h(tmp_path):
    harness = Harness(SERVICE, tmp_path)
    yield harness
    harness.close()
