"""Components as a pipeline: a real scikit-learn pipeline split into preprocessor, model and
postprocessor; params files (threshold, label map); partial rollback; the automatic rollback
of a rollout that changed one component. Through the Python API, the CLI and `mlops serve`."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from mlops import Client, ComponentRef, InvalidInput, WrongFlavor
from mlops.controller.loop import Controller
from mlops.core.components import PROBABILITIES
from mlops.rollout_spec import load_spec
from mlops.store import schema as t
from tests.components import LABELS, THRESHOLD, Split, make_split, threshold
from tests.integration.test_controller import STEPS, Clock, error_rate_judge, measure
from tests.server import MLOPS, eventually, running_server, server_env
from tests.snapshot import store_content


@pytest.fixture(scope="module")
def split(tmp_path_factory: pytest.TempPathFactory) -> Split:
    return make_split(tmp_path_factory.mktemp("components"))


def register_all(client: Client, split: Split) -> None:
    """scaler:1-2, clf:1-2 (each fitted on its scaler), thr:1, names:1, and misfits."""
    files = split.files
    for model, key in [
        ("scaler", "pre1"),
        ("scaler", "pre2"),
        ("clf", "model1"),
        ("clf", "model2"),
        ("thr", "threshold"),
        ("names", "labels"),
        ("both", "threshold_labels"),
        ("partial", "labels_partial"),
        ("wide", "wide"),
        ("reg", "regression"),
        ("three", "three"),
    ]:
        client.register(model, files[key])


@pytest.fixture
def registered(client: Client, split: Split) -> Client:
    register_all(client, split)
    return client


# ---------------------------------------------------------------------------------------------
# the params flavor


def test_params_files_register_without_trust(client: Client, split: Split) -> None:
    thr = client.register("thr", split.files["threshold"])
    assert thr.flavor == "params"
    assert not thr.trusted
    assert thr.signature["inputs"][0]["name"] == PROBABILITIES
    assert thr.signature["output_kind"] == "classification"
    names = client.register("names", split.files["labels"])  # YAML, numbers as keys
    assert names.flavor == "params"
    assert names.signature["classes"] == ["legit", "fraud"]
    assert names.signature["input_classes"] == ["0", "1"]
    assert client.load("thr:1").threshold == THRESHOLD
    assert client.register("thr", split.files["threshold"], flavor="params").version == 2


@pytest.mark.parametrize(
    ("text", "error", "message"),
    [
        ('{"threshold": 1.5}', InvalidInput, "between 0 and 1"),
        ('{"threshold": 0}', InvalidInput, "between 0 and 1"),
        ('{"threshold": "high"}', InvalidInput, "must be a number"),
        ('{"threshold": true}', InvalidInput, "must be a number"),
        ('{"labels": ["legit", "fraud"]}', InvalidInput, "map each class to its name"),
        ('{"labels": {"0": ""}}', InvalidInput, "empty"),
        ('{"labels": {"0": [1]}}', InvalidInput, "text or a number"),
        ('labels: {1: a, "1": b}', InvalidInput, "named twice"),
        ('{"threshold": 0.5, "colour": "red"}', InvalidInput, "unknown key 'colour'"),
        ('{"treshold": 0.5}', WrongFlavor, "or a params file"),
    ],
)
def test_invalid_params_files_are_refused_and_change_nothing(
    client: Client,
    store_url: str,
    home: Path,
    tmp_path: Path,
    text: str,
    error: type[Exception],
    message: str,
) -> None:
    bad = tmp_path / "bad.params"
    bad.write_text(text)
    before = store_content(store_url, home)
    with pytest.raises(error, match=message):
        client.register("thr", bad)
    assert store_content(store_url, home) == before


def test_an_explicit_params_flavor_explains_what_is_wrong(
    client: Client, split: Split, tmp_path: Path
) -> None:
    typo = tmp_path / "typo.json"
    typo.write_text('{"treshold": 0.5}')
    with pytest.raises(InvalidInput, match="unknown key 'treshold'"):
        client.register("thr", typo, flavor="params")
    with pytest.raises(InvalidInput, match="takes no --sample"):
        client.register("thr", split.files["threshold"], sample=split.files["text_sample"])
    with pytest.raises(WrongFlavor, match="is a params artifact, not skops"):
        client.register("thr", split.files["threshold"], flavor="skops")


# ---------------------------------------------------------------------------------------------
# components that must fit together


@pytest.mark.parametrize(
    ("components", "message"),
    [
        (
            {"model": "thr:1"},
            "'model' \\(thr:1\\) is a params file: it can only be a postprocessor",
        ),
        (
            {"model": "reg:1", "preprocessor": "scaler:1", "postprocessor": "thr:1"},
            "needs a classifier's probabilities; 'model' \\(reg:1\\) is a regression model",
        ),
        ({"model": "three:1", "postprocessor": "thr:1"}, "binary classifier; .* has 3 classes"),
        (
            {"model": "clf:1", "postprocessor": "partial:1"},
            "'postprocessor' \\(partial:1\\) has no label for class '0' of 'model' \\(clf:1\\)",
        ),
        (
            {"model": "clf:1", "preprocessor": "wide:1"},
            "'preprocessor' \\(wide:1\\) gives 28 columns "
            "but component 'model' \\(clf:1\\) takes 6",
        ),
    ],
)
def test_components_that_do_not_fit_are_refused(
    registered: Client, store_url: str, home: Path, components: dict[str, str], message: str
) -> None:
    components = dict(components)
    model = components.pop("model")
    before = store_content(store_url, home)
    with pytest.raises(InvalidInput, match=message):
        registered.deploy("api", model=model, components=components)
    assert store_content(store_url, home) == before
    forced = registered.deploy("api", model=model, components=components, force=True)
    assert forced.revision == 1


# ---------------------------------------------------------------------------------------------
# partial rollback


def test_partial_rollback_reverts_one_component_and_history_names_it(registered: Client) -> None:
    registered.deploy(
        "api", model="clf:1", components={"preprocessor": "scaler:1", "postprocessor": "thr:1"}
    )
    registered.deploy("api", model="clf:2", components={"preprocessor": "scaler:2"})
    result = registered.rollback("api", component="preprocessor", reason="scaler:2 clips")
    assert (result.revision, result.source_revision) == (3, 1)
    assert result.components == {
        "preprocessor": ComponentRef("scaler", 1),
        "model": ComponentRef("clf", 2),
        "postprocessor": ComponentRef("thr", 1),
    }
    history = registered.history("api")
    assert [r.changed_components for r in history] == [
        ["preprocessor"],
        ["model", "preprocessor"],
        ["model", "postprocessor", "preprocessor"],
    ]
    top = history[0].to_dict()
    assert top["changed_components"] == ["preprocessor"]
    assert top["changes"] == [{"component": "preprocessor", "from": "scaler:2", "to": "scaler:1"}]
    assert top["event"]["details"]["component"] == "preprocessor"
    assert top["event"]["reason"] == "scaler:2 clips"

    by_version = registered.rollback("api", component="preprocessor", version=2)
    assert by_version.revision == 4
    assert by_version.components["preprocessor"] == ComponentRef("scaler", 2)
    assert by_version.components["model"] == ComponentRef("clf", 2)
    assert registered.history("api", limit=1)[0].changed_components == ["preprocessor"]


def test_a_partial_rollback_into_components_that_do_not_fit_is_refused(
    registered: Client, store_url: str, home: Path
) -> None:
    registered.deploy("api", model="clf:1", components={"postprocessor": "names:1"})
    registered.deploy("api", model="three:1", components={"postprocessor": "partial:1"}, force=True)
    before = store_content(store_url, home)
    with pytest.raises(InvalidInput, match="no label for class '0' of 'model' \\(clf:1\\)"):
        registered.rollback("api", component="model")
    assert store_content(store_url, home) == before


def test_an_automatic_rollback_names_the_one_component_that_changed(
    registered: Client,
) -> None:
    components = {"preprocessor": "scaler:1", "postprocessor": "thr:1"}
    registered.deploy("api", model="clf:1", components=components)
    clock = Clock()
    controller = Controller(registered._service, error_rate_judge, clock=clock)
    registered._service.deploy(
        "api",
        components={"preprocessor": ComponentRef("scaler", 2)},
        rollout=load_spec(STEPS, strategy="canary"),
    )
    assert "candidate 2 at 20%" in controller.tick()[0]
    measure(registered, 2, 30, errors=25)
    clock.now += 1
    assert "rolled back (analysis" in controller.tick()[0]

    event = next(e for e in registered.events("api", limit=10) if e.action == "rollback")
    assert event.details["component"] == "preprocessor"
    assert event.details["components"] == ["preprocessor"]
    assert event.details["quarantined"] == ["scaler:2"]
    note = "(the rollout changed preprocessor alone: scaler:1 -> scaler:2)"
    assert event.reason is not None
    assert event.reason.endswith(note)
    with registered._service.store.read() as tx:
        payloads = [
            row.payload
            for row in tx.conn.execute(
                select(t.outbox.c.payload).where(t.outbox.c.event_id == event.id)
            )
        ]
    assert payloads
    assert all(note in p["reason"] for p in payloads)
    assert registered.status("api")[0].components["preprocessor"] == ComponentRef("scaler", 1)


def test_readiness_runs_text_example_rows_through_a_label_map(
    registered: Client, split: Split
) -> None:
    registered.register("text-pre", split.files["text_pre"], sample=split.files["text_sample"])
    registered.register("text-model", split.files["text_model"])
    registered.deploy("api", model="text-model:1", components={"preprocessor": "text-pre:1"})
    controller = Controller(registered._service, error_rate_judge, clock=Clock())
    registered._service.deploy(
        "api",
        components={"postprocessor": ComponentRef("names", 1)},
        rollout=load_spec(STEPS, strategy="canary"),
    )
    assert controller.tick() == ["api: candidate 2 at 20% (mirror 0%)"]


# ---------------------------------------------------------------------------------------------
# through `mlops serve` and the CLI


def run_cli(
    store_url: str, home: Path, *args: str, code: int = 0
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [MLOPS, *args],
        env={**server_env(store_url, home), "COLUMNS": "250"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == code, (args, done.returncode, done.stdout, done.stderr)
    return done


def releases_content(store_url: str, home: Path) -> dict[str, Any]:
    """The store's content but what a running gateway writes on its own (measurements, the
    request log, the controller's lease)."""
    content = store_content(store_url, home)
    gateway_writes = ("measurements", "predictions", "feedback", "leases", "store_meta")
    tables = {k: v for k, v in content["tables"].items() if k not in gateway_writes}
    assert {"releases", "events", "deployments", "release_components"} <= set(tables)
    return {"tables": tables, "artifacts": content["artifacts"]}


def wait_stable(http: httpx.Client, deployment: str, revision: int) -> None:
    def route() -> Any:
        return http.get("/v1/gateway").json()["deployments"].get(deployment)

    eventually(route, lambda r: r is not None and r["stable_revision"] == revision)


def predict(http: httpx.Client, deployment: str, rows: Any) -> httpx.Response:
    response = http.post(f"/v1/models/{deployment}:predict", json={"instances": rows})
    assert response.status_code == 200, response.text
    return response


@pytest.fixture
def served(store_url: str, home: Path, split: Split) -> Iterator[tuple[Client, httpx.Client]]:
    with (
        Client(store_url, home=home) as client,
        running_server(store_url, home) as server,
        server.client() as http,
    ):
        register_all(client, split)
        yield client, http


def test_the_gateway_serves_a_split_pipeline_and_a_partial_rollback(
    served: tuple[Client, httpx.Client], split: Split, store_url: str, home: Path
) -> None:
    client, http = served
    rows = split.x[:40]
    pre1, model1, pre2, model2 = split.pre1, split.model1, split.pre2, split.model2

    client.deploy(
        "api", model="clf:1", components={"preprocessor": "scaler:1", "postprocessor": "thr:1"}
    )
    wait_stable(http, "api", 1)
    response = predict(http, "api", rows.tolist())
    want = threshold(model1.predict_proba(pre1.transform(rows)), model1.classes_)
    assert response.json()["predictions"] == want.tolist()
    assert (want != model1.predict(pre1.transform(rows))).any()  # the threshold is not 0.5
    assert response.headers["x-components"] == (
        "preprocessor=scaler:1,model=clf:1,postprocessor=thr:1"
    )
    assert response.headers["x-model-version"] == "clf:1"

    client.deploy("api", model="clf:2", components={"preprocessor": "scaler:2"})
    wait_stable(http, "api", 2)
    response = predict(http, "api", rows.tolist())
    want = threshold(model2.predict_proba(pre2.transform(rows)), model2.classes_)
    assert response.json()["predictions"] == want.tolist()

    out = run_cli(store_url, home, "rollback", "api", "--component", "preprocessor").stdout
    assert "Rolled back api to revision 3, restoring preprocessor from revision 1" in out
    assert "preprocessor: scaler:2 -> scaler:1" in out
    wait_stable(http, "api", 3)
    response = predict(http, "api", rows.tolist())
    assert response.headers["x-components"] == (
        "preprocessor=scaler:1,model=clf:2,postprocessor=thr:1"
    )
    assert response.headers["x-release-revision"] == "3"
    mixed = threshold(model2.predict_proba(pre1.transform(rows)), model2.classes_)
    assert response.json()["predictions"] == mixed.tolist()

    history = json.loads(run_cli(store_url, home, "history", "api", "-o", "json").stdout)
    assert [h["changed_components"] for h in history] == [
        ["preprocessor"],
        ["model", "preprocessor"],
        ["model", "postprocessor", "preprocessor"],
    ]
    table = run_cli(store_url, home, "history", "api").stdout
    assert "rollback preprocessor alone to 1" in table
    assert "preprocessor: scaler:2 → scaler:1" in table

    before = releases_content(store_url, home)
    failed = run_cli(
        store_url, home, "rollback", "api", "--component", "postprocesor", code=3
    ).stderr
    assert "error: component 'postprocesor' is in neither release 3" in failed
    assert "(model, postprocessor, preprocessor)" in failed
    run_cli(store_url, home, "rollback", "api", "--component", "no such", code=5)
    assert releases_content(store_url, home) == before


def test_an_invalid_params_file_exits_5(
    client: Client, store_url: str, home: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "threshold.json"
    bad.write_text('{"threshold": 7}')
    before = store_content(store_url, home)
    failed = run_cli(store_url, home, "register", "thr", str(bad), code=5).stderr
    assert failed.startswith(f"error: {bad}: threshold must be between 0 and 1")
    assert store_content(store_url, home) == before


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_the_gateway_maps_labels_and_takes_text_columns(
    served: tuple[Client, httpx.Client], split: Split
) -> None:
    client, http = served
    rows = split.x[:20]
    pre1, model1 = split.pre1, split.model1

    client.deploy(
        "named", model="clf:1", components={"preprocessor": "scaler:1", "postprocessor": "names:1"}
    )
    client.deploy(
        "both", model="clf:1", components={"preprocessor": "scaler:1", "postprocessor": "both:1"}
    )
    client.register("text-pre", split.files["text_pre"], sample=split.files["text_sample"])
    client.register("text-model", split.files["text_model"])
    client.deploy("text", model="text-model:1", components={"preprocessor": "text-pre:1"})
    for name in ("named", "both", "text"):
        wait_stable(http, name, 1)

    classes = model1.predict(pre1.transform(rows))
    named = predict(http, "named", rows.tolist()).json()["predictions"]
    assert named == [LABELS[int(c)] for c in classes]
    assert set(named) == {"legit", "fraud"}
    decided = threshold(model1.predict_proba(pre1.transform(rows)), model1.classes_)
    assert predict(http, "both", rows.tolist()).json()["predictions"] == [
        LABELS[int(c)] for c in decided
    ]

    v2 = http.post(
        "/v2/models/named/infer",
        json={
            "inputs": [
                {
                    "name": "input",
                    "shape": [2, 6],
                    "datatype": "FP64",
                    "data": rows[:2].reshape(-1).tolist(),
                }
            ]
        },
    )
    assert v2.status_code == 200, v2.text
    output = v2.json()["outputs"][0]
    assert (output["datatype"], output["data"]) == ("BYTES", named[:2])
    metadata = http.get("/v2/models/named").json()
    assert metadata["outputs"][0]["datatype"] == "BYTES"

    import pandas as pd

    frame = pd.DataFrame(split.text_rows)
    want = split.text_model.predict(split.text_pre.transform(frame))
    got = predict(http, "text", split.text_rows).json()["predictions"]
    assert got == want.tolist()
    wrong = http.post("/v1/models/text:predict", json={"instances": [{"amount": 1.0}]})
    assert wrong.status_code == 400
    assert "missing feature 'city'" in wrong.json()["error"]
