"""The pure helpers that keep user text safe: names matched whole, printable actors and tags,
terminal output with no control characters, passwords hidden in free text."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlops.cli.render import safe
from mlops.core.refs import MAX_INT, check_name, is_printable, parse_tag, parse_version
from mlops.errors import BadReference, InvalidInput
from mlops.settings import check_actor, redact, redact_text


@given(st.text())
def test_safe_text_holds_no_control_or_invisible_character(text: str) -> None:
    shown = safe(text)
    assert all(unicodedata.category(c) != "Cc" for c in shown)
    assert not any(c in shown for c in "\u202e\u2066\u200b\u2028\ufeff")


def test_safe_text_keeps_printable_text_and_markup_as_is() -> None:
    assert safe("v1 drifted [see #12] :warning: é ✓") == "v1 drifted [see #12] :warning: é ✓"
    assert safe("a\x1b[2Jb\n\u202e") == "a\\x1b[2Jb\\n\\u202e"


@pytest.mark.parametrize("name", ["api\n", "api\r", "ápi", "", "a" * 64, "-api", "a b"])
def test_names_are_matched_whole(name: str) -> None:
    with pytest.raises(BadReference):
        check_name(name, "deployment")


@pytest.mark.parametrize("text", ["0", "-1", str(MAX_INT + 1), str(2**64), "²", "1\n", "1e3"])
def test_versions_are_bounded_integers(text: str) -> None:
    with pytest.raises(BadReference):
        parse_version(text)


def test_a_version_at_the_bound_is_read() -> None:
    assert parse_version(f"v{MAX_INT}") == MAX_INT


@pytest.mark.parametrize("tag", ["team\n=x", "te am=x", "team=a\x1bb", f"team={'x' * 300}"])
def test_tags_are_refused_with_control_characters_or_odd_keys(tag: str) -> None:
    with pytest.raises(BadReference):
        parse_tag(tag)


def test_a_tag_is_read() -> None:
    assert parse_tag(" mlops.io/team = risk ") == ("mlops.io/team", "risk")


@pytest.mark.parametrize("actor", ["", "  ", "a\tb", "a\x1bb", "x" * 129, "bob\u202e"])
def test_actors_are_printable_and_bounded(actor: str) -> None:
    assert not (actor.strip() and is_printable(actor) and len(actor) <= 128)
    with pytest.raises(InvalidInput):
        check_actor(actor, "MLOPS_ACTOR")


def test_passwords_are_hidden_in_urls_and_free_text() -> None:
    url = "postgresql+psycopg://ana:s3cr@t@db:5432/f?schema=x"
    assert "s3cr" not in redact(url)
    assert redact("postgresql://db/f?password=s3cret&schema=x").count("s3cret") == 0
    line = f"cannot read {url!r}; try mysql://root:pw@h/db and /tmp/x"
    assert redact_text(line) == (
        "cannot read 'postgresql+psycopg://ana:***@db:5432/f?schema=x'; "
        "try mysql://root:***@h/db and /tmp/x"
    )
    assert redact("/var/lib/features.db") == "/var/lib/features.db"
