import pytest

from mlops.core.refs import ComponentRef, check_name, parse_component, parse_ref, parse_tag
from mlops.errors import BadReference


def test_parse_ref_reads_model_and_version() -> None:
    assert parse_ref("fraud:3") == ComponentRef("fraud", 3)
    assert parse_ref("fraud:v12") == ComponentRef("fraud", 12)
    assert str(ComponentRef("fraud", 3)) == "fraud:3"


@pytest.mark.parametrize(
    "text", ["fraud", "fraud:", ":3", "fraud:0", "fraud:-1", "fraud:x", "bad name:1"]
)
def test_parse_ref_refuses_malformed(text: str) -> None:
    with pytest.raises(BadReference, match=r"MODEL:VERSION|invalid"):
        parse_ref(text)


def test_parse_component() -> None:
    assert parse_component("preprocessor=scaler:2") == ("preprocessor", ComponentRef("scaler", 2))
    with pytest.raises(BadReference, match="NAME=MODEL:VERSION"):
        parse_component("scaler:2")


def test_names_are_checked() -> None:
    assert check_name("fraud-api.v2_x", "deployment") == "fraud-api.v2_x"
    for bad in ["", "-x", "a b", "x" * 64, "a/b"]:
        with pytest.raises(BadReference):
            check_name(bad, "deployment")


def test_parse_tag() -> None:
    assert parse_tag("team = risk") == ("team", "risk")
    with pytest.raises(BadReference):
        parse_tag("nokey")
