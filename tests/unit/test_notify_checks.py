"""The checks of `notify:` entries made at deploy time (issue 10, finding 9)."""

from __future__ import annotations

import pytest

from mlops.notify.checks import MAX_URL, events_problem, secret_env_problem, url_problem


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:9000/hook", "https://hooks.slack.com/services/T/B/X", "HTTPS://h/x"],
)
def test_http_urls_with_a_host_pass(url: str) -> None:
    assert url_problem(url) is None


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("file:///etc/passwd", "not file://"),
        ("ftp://example.com/x", "not ftp://"),
        ("example.com/x", "not no scheme"),
        ("http:///x", "needs a host"),
        ("http://example.com:http/x", "port"),
        ("http://example.com:99999/x", "port"),
        ("http://example.com/a b", "no spaces"),
        ("http://example.com/\x00", "control characters"),
        ("http://example.com/" + "a" * MAX_URL, "at most"),
    ],
)
def test_urls_that_cannot_be_delivered_to_are_named(url: str, words: str) -> None:
    problem = url_problem(url)
    assert problem is not None
    assert words in problem


def test_secret_env_is_a_variable_name() -> None:
    assert secret_env_problem("HOOK_SECRET") is None
    assert secret_env_problem("_x1") is None
    for bad in ("", "1ABC", "A-B", "A B", "A" * 300, "A\n"):
        assert secret_env_problem(bad) is not None


def test_events_are_known_kinds() -> None:
    assert events_problem(["rolled_back", "step", "*"]) is None
    problem = events_problem(["rolled_back", "rollback"])
    assert problem is not None
    assert "'rollback'" in problem
