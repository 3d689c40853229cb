"""The idle/lag helpers survive a group coordinator that is still loading."""

import pytest
from kafka.errors import GroupAuthorizationFailedError, NotCoordinatorError

from shared.runtime.topics import committed_offsets


class FakeAdmin:
    def __init__(self, failures: list[Exception]) -> None:
        self.failures = failures
        self.calls = 0

    def list_group_offsets(self, groups):
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return {g: {} for g in groups}


def test_retriable_errors_are_retried_until_an_answer():
    admin = FakeAdmin([NotCoordinatorError(), NotCoordinatorError()])
    assert committed_offsets(admin, ["g"], timeout_s=5) == {"g": {}}
    assert admin.calls == 3


def test_non_retriable_errors_are_raised_at_once():
    admin = FakeAdmin([GroupAuthorizationFailedError()])
    with pytest.raises(GroupAuthorizationFailedError):
        committed_offsets(admin, ["g"], timeout_s=5)
    assert admin.calls == 1


def test_gives_up_after_the_timeout():
    admin = FakeAdmin([NotCoordinatorError()] * 1000)
    with pytest.raises(NotCoordinatorError):
        committed_offsets(admin, ["g"], timeout_s=0.2)
