"""Who may do what: the pure decision over roles, scopes and deployment globs, and the shape
and hash of a token's secret."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlops.core.access import (
    EVERY,
    Identity,
    Need,
    check_glob,
    key_id_of,
    make_secret,
    refusal,
    same_hash,
    secret_hash,
)

VIEWER = Identity("v", "viewer")
OPERATOR = Identity("o", "operator", deployments="fraud-*")
ADMIN = Identity("a", "admin")
LABELLER = Identity("l", None, deployments="fraud-api", scopes=frozenset({"feedback"}))

ALLOWED: dict[Need, set[str]] = {
    "read": {"v", "o", "a"},
    "operate": {"o", "a"},
    "run_code": {"a"},
    "admin": {"a"},
    "feedback": {"l"},
    "predict": set(),
}


@pytest.mark.parametrize("need", list(ALLOWED))
def test_each_need_is_allowed_to_exactly_the_roles_and_scopes_that_grant_it(need: Need) -> None:
    allowed = {
        who.name
        for who in (VIEWER, OPERATOR, ADMIN, LABELLER)
        if refusal(who, need, "fraud-api") is None
    }
    assert allowed == ALLOWED[need]


def test_a_glob_limits_every_role_and_scope_to_the_deployments_it_covers() -> None:
    assert refusal(OPERATOR, "operate", "fraud-api") is None
    assert refusal(OPERATOR, "operate", "churn-api") == (
        "token 'o' is scoped to deployments 'fraud-*'"
    )
    assert refusal(OPERATOR, "read", "churn-api") is not None
    assert refusal(LABELLER, "feedback", "fraud-api-2") is not None
    assert refusal(OPERATOR, "operate") is None  # not about one deployment (a registration)


def test_a_model_wide_change_needs_a_glob_that_covers_every_deployment() -> None:
    assert refusal(OPERATOR, "operate", EVERY) is not None
    assert refusal(Identity("all", "operator"), "operate", EVERY) is None


def test_a_refusal_says_what_was_missing() -> None:
    assert refusal(VIEWER, "operate", "x") == "token 'v' has role viewer; this needs operator"
    assert refusal(LABELLER, "read", "fraud-api") == "token 'l' has no role; this needs viewer"
    assert refusal(ADMIN, "feedback", "x") == "token 'a' lacks the 'feedback' scope"


def test_a_glob_is_matched_case_sensitively_and_whole() -> None:
    who = Identity("g", "viewer", deployments="api")
    assert refusal(who, "read", "api") is None
    assert refusal(who, "read", "API") is not None
    assert refusal(who, "read", "api2") is not None


@pytest.mark.parametrize("glob", ["", "a" * 129, "../x", "a/b", "a b", "é", "x\n"])
def test_a_glob_outside_its_alphabet_is_refused(glob: str) -> None:
    with pytest.raises(ValueError, match="invalid deployment glob"):
        check_glob(glob)


def test_a_secret_has_a_public_key_id_and_a_random_part() -> None:
    secret = make_secret("0123456789ab", "A" * 43)
    assert secret == "mlops_0123456789ab_" + "A" * 43
    assert key_id_of(secret) == "0123456789ab"
    with pytest.raises(ValueError, match="12 hex digits"):
        make_secret("xyz", "A" * 43)


@given(st.text(max_size=300))
def test_anything_that_is_not_a_secret_has_no_key_id(text: str) -> None:
    if not text.startswith("mlops_"):
        assert key_id_of(text) is None


@pytest.mark.parametrize(
    "text",
    [
        "mlops_0123456789ab_" + "A" * 42,
        "mlops_0123456789ab_" + "A" * 44,
        "mlops_0123456789AB_" + "A" * 43,
        "mlops_0123456789ab_" + "A" * 42 + "=",
        " mlops_0123456789ab_" + "A" * 43,
        "mlops_0123456789ab_" + "A" * 43 + "\n",
        "mlops_0123456789ab_" + "A" * 10_000,
    ],
)
def test_a_near_miss_has_no_key_id(text: str) -> None:
    assert key_id_of(text) is None


def test_only_the_same_secret_has_the_same_hash() -> None:
    one = make_secret("0123456789ab", "A" * 43)
    other = make_secret("0123456789ab", "A" * 42 + "B")
    assert same_hash(secret_hash(one), secret_hash(one))
    assert not same_hash(secret_hash(one), secret_hash(other))
    assert len(secret_hash(one)) == 64
