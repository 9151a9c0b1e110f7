"""Reading a remote version's file and the operator's list of model servers (pure)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlops.core.remote import parse_allow_list, parse_remote
from mlops.errors import InvalidInput


def spec(**remote: Any) -> Any:
    return parse_remote({"remote": {"url": "http://10.0.0.5:8080", "model": "m", **remote}}, "f")


def test_a_full_spec_is_read() -> None:
    found = spec(
        url="https://models.internal/serving/",
        version=3,
        timeout_s=0.5,
        retries=2,
        token_env="MLOPS_REMOTE_TOKEN_FRAUD",
        ca_file="/etc/ca.pem",
        outputs={"predict": "label", "probabilities": "probs"},
        kind="classification",
    )
    assert (found.protocol, found.host, found.port, found.tls) == (
        "rest",
        "models.internal",
        443,
        True,
    )
    assert found.url == "https://models.internal:443/serving"
    assert found.model_path == "models/m/versions/3"
    assert (found.timeout_s, found.retries) == (0.5, 2)
    assert (found.predict_output, found.probability_output) == ("label", "probs")
    grpc = spec(url="grpc://[::1]:9000")
    assert (grpc.protocol, grpc.host, grpc.port, grpc.loopback) == ("grpc", "::1", 9000, True)


@pytest.mark.parametrize(
    ("remote", "message"),
    [
        ({"url": "ftp://h/"}, "must start with http"),
        ({"url": "http://user:pw@h/"}, "must not hold credentials"),
        ({"url": "http://h/?a=1"}, "no query"),
        ({"url": "grpc://h:1/path"}, "takes no path"),
        ({"url": "http://h/a b"}, "printable ASCII"),
        ({"url": "http://h/%2e%2e"}, "path may hold only"),
        ({"url": "http://h:99999/"}, "not a URL"),
        ({"model": "../admin"}, "remote.model must be"),
        ({"model": None}, "remote.model is required"),
        ({"version": "1/../2"}, "remote.version must be"),
        ({"timeout_s": 0}, "timeout_s must be a number from 0.05"),
        ({"timeout_s": float("nan")}, "timeout_s"),
        ({"retries": 1.5}, "retries must be a whole number"),
        ({"retries": True}, "retries"),
        ({"token_env": "lower"}, "must name an environment variable"),
        ({"token_env": "MLOPS_REMOTE_TOKEN_T"}, "a token goes only over TLS"),
        ({"token_env": "AWS_SECRET_ACCESS_KEY"}, "MLOPS_REMOTE_TOKEN_NAME"),
        ({"ca_file": "/ca.pem"}, "ca_file needs https"),
        ({"kind": "ranking"}, "remote.kind is one of"),
        ({"outputs": {"other": "x"}}, "remote.outputs maps"),
        ({"surprise": 1}, "unknown key"),
    ],
)
def test_a_bad_spec_says_what_is_wrong(remote: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        spec(**remote)


def test_a_token_may_go_to_a_loopback_server_without_tls() -> None:
    assert spec(url="http://127.0.0.1:8080", token_env="MLOPS_REMOTE_TOKEN_T").token_env is not None


@pytest.mark.parametrize("document", [None, [], {"remote": 1}, {"remote": {}, "x": 1}])
def test_a_document_that_is_no_remote_spec_is_refused(document: Any) -> None:
    with pytest.raises(InvalidInput):
        parse_remote(document, "f")


def test_the_allow_list_matches_hosts_and_ports_exactly() -> None:
    allowed = parse_allow_list(" models.internal , 10.0.0.5:8080,[::1]:9000,")
    assert allowed.allows("models.internal", 1)
    assert allowed.allows("MODELS.internal", 443)
    assert allowed.allows("10.0.0.5", 8080)
    assert not allowed.allows("10.0.0.5", 8081)
    assert allowed.allows("::1", 9000)
    assert not allowed.allows("evil.models.internal", 443)
    assert not allowed.allows("models.internal.evil", 443)
    with pytest.raises(InvalidInput, match="remote versions are off"):
        parse_allow_list("").check(spec(), "f")
    with pytest.raises(InvalidInput, match="not among"):
        allowed.check(spec(url="http://10.0.0.5:8081"), "f")
    for bad in ("*", "h:0", "a b", "::1", "h:70000", "http://h"):
        with pytest.raises(InvalidInput, match="MLOPS_REMOTE_HOSTS"):
            parse_allow_list(bad)


@given(st.text(max_size=200))
def test_any_url_is_read_or_refused_with_a_message(url: str) -> None:
    try:
        found = spec(url=url)
    except InvalidInput as exc:
        message = str(exc)
    else:
        assert found.protocol in ("rest", "grpc")
        assert found.host
        assert 0 < found.port < 65536
        return
    assert message.startswith("f: ")
