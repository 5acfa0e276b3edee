"""Fixtures shared by the analytics tests."""

import pytest


@pytest.fixture
def marketer(make_member, login):
    user = make_member(roles=("marketer",))
    return user, login(user)
