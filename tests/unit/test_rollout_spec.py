from pathlib import Path

import pytest

from mlops.core.metric_checks import MetricCheck
from mlops.core.strategies import Mirror, Pause, SetWeight
from mlops.errors import InvalidInput, UnreadableFile
from mlops.rollout_spec import load_spec, parse_duration, read_spec_file

PROM = {"address": "http://127.0.0.1:9090", "query": "sum(rate(mlops_errors_total[{interval}]))"}
METRIC = {"name": "errors", "prometheus": PROM, "max": 0.05}


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
        (
            {"notify": [{"webhook": "http://a/x", "slack": "https://b/y"}]},
            "exactly one of webhook, slack or log",
        ),
        ({"on_failure": "panic"}, "on_failure"),
        ({"analysis": {"colour": "blue"}}, "analysis.colour: unknown setting"),
        (
            {"analysis": {"metrics": {"name": "m"}}},
            "analysis.metrics: Input should be a valid list",
        ),
        ({"analysis": {"metrics": [{**METRIC, "max": "high"}]}}, "analysis.metrics.0.max"),
        ({"analysis": {"metrics": [{**METRIC, "max": None}]}}, "analysis.metrics.0: Value error"),
        ({"analysis": {"metrics": [{**METRIC, "min": 2}]}}, "min 2 is above max 0.05"),
        ({"analysis": {"metrics": [{**METRIC, "interval": 0}]}}, "analysis.metrics.0.interval"),
        ({"analysis": {"metrics": [{**METRIC, "failure_limit": -1}]}}, "metrics.0.failure_limit"),
        ({"analysis": {"metrics": [{**METRIC, "colour": 1}]}}, "analysis.metrics.0.colour"),
        ({"analysis": {"metrics": [METRIC, METRIC]}}, "analysis.metrics.1.name: 'errors' is used"),
        (
            {"analysis": {"metrics": [{**METRIC, "prometheus": {"address": "localhost:9090"}}]}},
            "analysis.metrics.0.prometheus.address",
        ),
        (
            {"analysis": {"metrics": [{**METRIC, "prometheus": {**PROM, "query": "x{revison}"}}]}},
            "analysis.metrics.0.prometheus.query: Value error, unknown placeholder {revison}",
        ),
    ],
)
def test_invalid_specs_name_the_field(data: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInput, match="invalid rollout spec") as info:
        load_spec(data)
    assert message in str(info.value)


def test_prometheus_metrics(tmp_path: Path) -> None:
    path = tmp_path / "rollout.yaml"
    path.write_text(
        "analysis:\n"
        "  max_error_rate: 0.02\n"
        "  metrics:\n"
        "    - name: positive_share\n"
        "      prometheus:\n"
        "        address: http://127.0.0.1:9090/\n"
        "        query: >-\n"
        '          sum(rate(mlops_predictions_total{revision="{candidate_revision}",value="1"}\n'
        "          [{interval}]))\n"
        "      min: 0.1\n"
        "      max: 0.6\n"
        "      interval: 1m\n"
    )
    spec = read_spec_file(path)
    (metric,) = spec.metrics()
    assert metric.prometheus.address == "http://127.0.0.1:9090"
    assert metric.check() == MetricCheck("positive_share", 0.1, 0.6, 60.0, 0, 4)
    assert load_spec({"analysis": {"metrics": [METRIC]}}).metrics()[0].interval == 30


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
