"""Which workspace and roles a token's claims give."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pingtower.common.oidc import roles_of, workspace_of
from pingtower.common.security import ROLES

names = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", fullmatch=True)
role_names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=20)
any_roles = st.lists(st.one_of(st.sampled_from(ROLES), role_names), max_size=8)


@given(names)
def test_workspace_given_as_a_string_is_taken_as_it_is(workspace: str) -> None:
    assert workspace_of(workspace) == workspace


@given(names)
def test_workspace_given_as_a_list_of_one_is_that_one(workspace: str) -> None:
    assert workspace_of([workspace]) == workspace


@given(names)
def test_workspace_given_as_a_group_path_is_its_last_part(workspace: str) -> None:
    assert workspace_of(f"/workspaces/{workspace}") == workspace


@given(st.lists(names, min_size=2, max_size=5))
def test_several_workspaces_give_none(workspaces: list[str]) -> None:
    assert workspace_of(workspaces) is None


def test_missing_or_empty_workspace_gives_none() -> None:
    for value in (None, "", "   ", [], [""], 42, {"name": "acme"}, ["/workspaces/"]):
        assert workspace_of(value) is None


def test_workspace_that_is_not_a_plain_short_name_gives_none() -> None:
    for value in (" acme", "acme ", "ac me", "-acme", "acme\n", "a" * 65, "acmé", "acme;drop"):
        assert workspace_of(value) is None
    assert workspace_of("a" * 64) == "a" * 64


@given(any_roles, any_roles, any_roles)
def test_roles_are_the_pingtower_roles_of_the_realm_and_the_api_client(
    realm: list[str], api: list[str], other_client: list[str]
) -> None:
    claims = {
        "realm_access": {"roles": realm},
        "resource_access": {"pingtower-api": {"roles": api}, "account": {"roles": other_client}},
    }
    assert roles_of(claims, "pingtower-api") == frozenset((set(realm) | set(api)) & set(ROLES))


def test_malformed_role_claims_give_no_roles() -> None:
    for claims in (
        {},
        {"realm_access": ["admin"]},
        {"realm_access": {"roles": "admin"}},
        {"resource_access": {"pingtower-api": ["admin"]}},
        {"realm_access": {"roles": [1, None, {"admin": True}]}},
    ):
        assert roles_of(claims, "pingtower-api") == frozenset()
