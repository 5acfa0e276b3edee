"""Fixtures shared by the surveys tests."""

import pytest


@pytest.fixture
def marketer(make_member, login):
    """A marketer and their logged-in client."""
    user = make_member(roles=("marketer",))
    return user, login(user)
