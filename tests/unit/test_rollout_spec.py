from pathlib import Path

import pytest

from mlops.core.strategies import Mirror, Pause, SetWeight
from mlops.errors import InvalidInput, UnreadableFile
from mlops.rollout_spec import load_spec, parse_duration, read_spec_file


def test_defaults_run_without_yaml() -> None:
    spec = load_spec().plan()
    assert spec.strategy == "canary"
    assert spec.steps[0] == SetWeight(5)
    assert spec.steps[-1] == SetWeight(100)
    assert spec.on_failure == "rollback"
    for strategy in ("linear", "bluegreen", "shadow", "direct"):
        assert load_spec(strategy=strategy).plan().steps[-1] in (SetWeight(100), Pause(60.0))


def test_argo_vocabulary(tmp_path: Path) -> None:
    path = tmp_path / "rollout.yaml"
    path.write_text(
        "strategy: canary\n"
        "steps:\n"
        "  - set_weight: 10\n"
        "  - pause: {duration: 1m, requests: 200}\n"
        "  - mirror: 20\n"
        "  - pause: {}\n"
        "progress_deadline: 5m\n"
        "on_failure: pause\n"
        "notify:\n"
        "  - {webhook: 'http://127.0.0.1:9/h', secret_env: S, events: [rolled_back]}\n"
    )
    spec = read_spec_file(path)
    plan = spec.plan()
    assert plan.steps == (SetWeight(10), Pause(60.0, 200), Mirror(20), Pause(), SetWeight(100))
    assert plan.progress_deadline_s == 300
    assert plan.on_failure == "pause"
    assert spec.notify[0].events == ["rolled_back"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"strategy": "yolo"}, "strategy"),
        ({"steps": [{"set_weight": 150}]}, "steps.0.set_weight"),
        ({"steps": [{"set_weight": 5, "pause": {}}]}, "exactly one of set_weight, pause or mirror"),
        ({"steps": [{"pause": {"duration": "soon"}}]}, "steps.0.pause.duration"),
        ({"strategy": "linear", "steps": [{"set_weight": 5}]}, "steps are for the canary strategy"),
        ({"linear": {"step": 0}}, "linear.step"),
        ({"colour": "blue"}, "colour"),
        ({"notify": [{"webhook": "x", "slack": "y"}]}, "exactly one of webhook, slack or log"),
        ({"on_failure": "panic"}, "on_failure"),
    ],
)
def test_invalid_specs_name_the_field(data: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInput, match="invalid rollout spec") as info:
        load_spec(data)
    assert message in str(info.value)


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(UnreadableFile):
        read_spec_file(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps: [\n")
    with pytest.raises(InvalidInput, match="not valid YAML"):
        read_spec_file(bad)
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(InvalidInput, match="mapping"):
        read_spec_file(bad)


def test_durations() -> None:
    assert parse_duration(90) == 90
    assert parse_duration("1.5m") == 90
    assert parse_duration("250ms") == 0.25
    assert parse_duration("2h") == 7200
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("tomorrow")
