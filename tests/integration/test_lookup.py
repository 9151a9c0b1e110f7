"""Feature lookups: a release whose first stage reads feature values from the deployment's data
(a real SQLite file or PostgreSQL schema) at prediction time, through `mlops serve`.

The end-to-end story: a scikit-learn pipeline (lookup, ColumnTransformer, LogisticRegression)
serves a fixed set of requests; a release changes the preprocessor and migrates the feature
table; live traffic shows it failing; the controller rolls it back and the restore puts the
table back; the same requests then get the same answers as before, byte for byte.
"""

from __future__ import annotations

import sqlite3
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml

from mlops import Client, InvalidInput
from tests.server import Cli, Server, Traffic, eventually, running_server, server_env, wait_for

N_CUSTOMERS = 120
REGIONS = ("north", "south", "east")
MIGRATION = """
UPDATE customers SET tenure = tenure - 10;
ALTER TABLE customers ADD COLUMN segment TEXT DEFAULT 'retail';
"""


def customers() -> list[tuple[int, float, float, str]]:
    rng = np.random.default_rng(7)
    return [
        (
            i,
            round(float(rng.uniform(20_000, 120_000)), 2),
            round(float(rng.uniform(1, 20)), 2),
            REGIONS[i % 3],
        )
        for i in range(N_CUSTOMERS)
    ]


@dataclass
class Models:
    files: dict[str, Path]
    requests: list[dict[str, Any]]
    """A fixed set of requests: a customer and an amount each."""
    expected: list[int]
    """What the first release must answer them, computed with scikit-learn alone."""


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Models:
    import joblib
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

    folder = tmp_path_factory.mktemp("lookup")
    table = pd.DataFrame(customers(), columns=["customer_id", "income", "tenure", "region"])
    rng = np.random.default_rng(3)
    draws = pd.DataFrame(
        {
            "customer_id": rng.integers(0, N_CUSTOMERS, 600),
            "amount": rng.uniform(5, 500, 600).round(2),
        }
    )
    frame = draws.merge(table, on="customer_id")[["amount", "income", "tenure", "region"]]
    risk = frame.amount / 100 - frame.income / 40_000 - frame.tenure / 8
    label = (risk + rng.normal(0, 0.5, len(frame)) > risk.median()).astype(int)

    onehot = OneHotEncoder(handle_unknown="ignore", sparse_output=False)
    pre1 = ColumnTransformer(
        [("num", StandardScaler(), ["amount", "income", "tenure"]), ("cat", onehot, ["region"])]
    ).fit(frame)
    pre2 = ColumnTransformer(  # log of the tenure: fails on the migrated (negative) tenures
        [
            ("log", FunctionTransformer(np.log), ["tenure"]),
            ("num", StandardScaler(), ["amount", "income"]),
            ("cat", onehot, ["region"]),
        ]
    ).fit(frame)
    clf = LogisticRegression(max_iter=1000).fit(pre1.transform(frame), label)

    files = {}
    for name, obj in {"pre1": pre1, "pre2": pre2, "clf": clf}.items():
        files[name] = folder / f"{name}.joblib"
        joblib.dump(obj, files[name])
    files["lookup"] = folder / "lookup.yaml"
    files["lookup"].write_text(
        yaml.safe_dump(
            {
                "lookup": {
                    "resource": "features",
                    "table": "customers",
                    "key": "customer_id",
                    "columns": ["income", "tenure", "region"],
                    "inputs": ["customer_id", "amount"],
                }
            }
        )
    )
    files["migration"] = folder / "migrate.sql"
    files["migration"].write_text(MIGRATION)

    keys, amounts = rng.integers(0, N_CUSTOMERS, 40), rng.uniform(5, 500, 40).round(2)
    requests = [
        {"customer_id": int(c), "amount": float(a)} for c, a in zip(keys, amounts, strict=True)
    ]
    asked = pd.DataFrame(requests).merge(table, on="customer_id", how="left")
    expected = clf.predict(pre1.transform(asked[["amount", "income", "tenure", "region"]]))
    assert len(set(expected.tolist())) == 2
    return Models(files, requests, expected.tolist())


# -- the feature table, on each backend --------------------------------------------------------


@dataclass
class Table:
    option: dict[str, str]
    """How `Client.add_data` declares it."""
    rows: Any
    """() -> the table's rows, ordered by key."""
    write: Any
    """(sql) -> None: a write as another program would make it."""


def sqlite_table(folder: Path) -> Table:
    path = folder / "features.db"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(
            "CREATE TABLE customers (customer_id INTEGER PRIMARY KEY, income REAL, "
            "tenure REAL, region TEXT)"
        )
        conn.executemany("INSERT INTO customers VALUES (?, ?, ?, ?)", customers())
    conn.close()

    def rows() -> list[tuple[Any, ...]]:
        with sqlite3.connect(path) as conn:
            found = conn.execute("SELECT * FROM customers ORDER BY customer_id").fetchall()
        conn.close()
        return found

    def write(sql: str) -> None:
        with sqlite3.connect(path) as conn:
            conn.execute(sql)
        conn.close()

    return Table({"sqlite": str(path)}, rows, write)


def postgresql_table(database_url: str) -> Table:
    import psycopg

    url = database_url.replace("postgresql+psycopg://", "postgresql://")
    schema = f"f_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
        conn.execute(
            f'CREATE TABLE "{schema}".customers (customer_id bigint PRIMARY KEY, '
            "income double precision, tenure double precision, region text)"
        )
        with conn.cursor() as cur:
            cur.executemany(
                f'INSERT INTO "{schema}".customers VALUES (%s, %s, %s, %s)', customers()
            )

    def rows() -> list[tuple[Any, ...]]:
        with psycopg.connect(url) as conn:
            return conn.execute(
                f'SELECT * FROM "{schema}".customers ORDER BY customer_id'
            ).fetchall()

    def write(sql: str) -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'SET search_path TO "{schema}"')
            conn.execute(sql.encode())

    return Table({"postgresql": f"{url}?schema={schema}"}, rows, write)


@pytest.fixture
def table(store_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> Table:
    """The feature table on the store's backend: SQLite beside an SQLite store, a schema of
    the test database beside a PostgreSQL store."""
    if store_url.startswith("sqlite"):
        return sqlite_table(tmp_path)
    return postgresql_table(request.getfixturevalue("pg_database"))


# -- serving -----------------------------------------------------------------------------------


def ask(http: httpx.Client, requests: list[dict[str, Any]]) -> httpx.Response:
    return http.post("/v1/models/scoring:predict", json={"instances": requests})


def routed_to_stable_only(http: httpx.Client) -> bool:
    split = http.get("/v1/gateway").json()["deployments"]["scoring"]["split"]
    return list(split["weights"]) == ["1"] and not split.get("shadows")


@pytest.fixture
def served(
    store_url: str, home: Path, models: Models, table: Table
) -> Iterator[tuple[Client, Server, httpx.Client]]:
    files = models.files
    with Client(store_url, home=home) as client:
        client.register("feats", files["lookup"])
        client.register("prep", files["pre1"], trust=True)
        client.register("prep", files["pre2"], trust=True)
        client.register("clf", files["clf"], trust=True)
        client.add_data("scoring", "features", **table.option)  # type: ignore[arg-type]
        client.deploy(
            "scoring",
            model="clf:1",
            components={"lookup": "feats:1", "preprocessor": "prep:1"},
        )
        with running_server(store_url, home) as server, server.client() as http:
            eventually(lambda: ask(http, models.requests[:1]).status_code, lambda c: c == 200)
            yield client, server, http


def test_predictions_are_identical_after_an_automatic_rollback_restores_the_table(
    served: tuple[Client, Server, httpx.Client], models: Models, table: Table
) -> None:
    client, server, http = served
    original = table.rows()
    before = ask(http, models.requests)
    assert before.status_code == 200, before.text
    assert before.json()["predictions"] == models.expected
    assert before.headers["x-components"] == "lookup=feats:1,preprocessor=prep:1,model=clf:1"

    bodies = [{"instances": [r]} for r in models.requests]
    with Traffic(server.url, "/v1/models/scoring:predict", bodies) as traffic:
        wait_for(lambda: len(traffic.seen) > 20, timeout=30)
        spec = {"steps": [{"set_weight": 50}, {"pause": {"duration": "2m"}}]}
        client.deploy(
            "scoring",
            components={"preprocessor": "prep:2"},
            strategy="canary",
            rollout=spec,
            migration=models.files["migration"],
        )
        migrated = table.rows()
        assert migrated != original
        assert len(migrated[0]) == 5  # the migration added a column
        wait_for(lambda: client.status("scoring")[0].rollout is None, timeout=90, interval=0.2)
        assert (500, 2) in traffic.seen  # the candidate failed live: log of negative tenures
        eventually(lambda: routed_to_stable_only(http), lambda only: only)
        mark = len(traffic.seen)
        eventually(lambda: client.snapshots("scoring")[0].status, lambda s: s == "restored")
        wait_for(lambda: len(traffic.seen) > mark + 20, timeout=30)
    # the stable release served every request, before, during and after the restore
    assert set(traffic.seen[mark + 1 :]) == {(200, 1)}  # (one request was in flight at mark)

    status = client.status("scoring")[0]
    assert status.revision == 1
    rollback = next(e for e in client.events("scoring") if e.action == "rollback")
    assert rollback.trigger == "analysis"
    assert rollback.details["component"] == "preprocessor"
    snapshot = client.snapshots("scoring")[0]
    assert snapshot.status == "restored"
    assert table.rows() == original
    assert snapshot.checksum

    after = ask(http, models.requests)
    assert after.status_code == 200, after.text
    assert after.json()["predictions"] == before.json()["predictions"]
    assert after.content == before.content


def test_a_key_the_table_lacks_is_the_clients_error_alone(
    served: tuple[Client, Server, httpx.Client], models: Models
) -> None:
    _, _, http = served
    unknown = {"customer_id": N_CUSTOMERS + 5, "amount": 10.0}
    r = ask(http, [unknown])
    assert r.status_code == 422
    assert f"customer_id = {N_CUSTOMERS + 5}" in r.json()["error"]
    # batched with good requests, only the bad one fails
    results: list[int] = []

    def one(body: list[dict[str, Any]]) -> None:
        with httpx.Client(base_url=str(http.base_url), timeout=10) as own:
            results.append(ask(own, body).status_code)

    threads = [
        threading.Thread(target=one, args=([unknown] if i == 0 else models.requests[i : i + 1],))
        for i in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [200] * 7 + [422]
    float_key = ask(http, [{"customer_id": 3.0, "amount": 10.0}])
    assert float_key.status_code == 200, float_key.text


def test_a_write_to_the_table_is_served_at_once(
    served: tuple[Client, Server, httpx.Client], models: Models, table: Table
) -> None:
    _, _, http = served
    request = models.requests[0]
    key = request["customer_id"]
    first = ask(http, [request]).json()["predictions"]
    table.write(
        f"UPDATE customers SET income = 1e9 * (2 * {first[0]} - 1) WHERE customer_id = {key}"
    )
    eventually(lambda: ask(http, [request]).json()["predictions"], lambda p: p != first)


def test_a_lookup_needs_a_declared_resource_and_a_fitting_next_stage(
    client: Client, models: Models, tmp_path: Path
) -> None:
    files = models.files
    client.register("feats", files["lookup"])
    client.register("prep", files["pre1"], trust=True)
    client.register("clf", files["clf"], trust=True)
    client.deploy("scoring", model="clf:1", components={"preprocessor": "prep:1"})
    with pytest.raises(InvalidInput, match="reads the data resource 'features', which the"):
        client.deploy("scoring", components={"lookup": "feats:1"})
    client.add_data("scoring", "features", sqlite=sqlite_table(tmp_path).option["sqlite"])
    narrow = tmp_path / "narrow.yaml"
    narrow.write_text(
        yaml.safe_dump(
            {
                "lookup": {
                    "resource": "features",
                    "table": "customers",
                    "key": "customer_id",
                    "columns": ["income", "tenure"],
                    "inputs": ["customer_id", "amount"],
                }
            }
        )
    )
    client.register("feats", narrow)
    with pytest.raises(InvalidInput, match="gives no column 'region', which the next stage"):
        client.deploy("scoring", components={"lookup": "feats:2"})
    with pytest.raises(InvalidInput, match="is a lookup: it must be the component named"):
        client.deploy("scoring", components={"preprocessor": "feats:1"})
    assert [r.revision for r in client.history("scoring")] == [1]
    done = client.deploy("scoring", components={"lookup": "feats:1"})
    assert done.revision == 2


@pytest.mark.parametrize(
    ("lookup", "message"),
    [
        ({"resource": "features", "table": "t", "key": "k"}, "lookup needs 'columns'"),
        (
            {"resource": "features", "table": "t; drop", "key": "k", "columns": ["a"]},
            "table must be a name of letters",
        ),
        (
            {"resource": "f", "table": "t", "key": "k", "columns": ["a"], "inputs": ["x"]},
            "inputs must include the key 'k'",
        ),
        (
            {"resource": "f", "table": "t", "key": "k", "columns": ["a"], "missing": "zero"},
            "missing must be error or nan",
        ),
        ({"resource": "f", "table": "t", "key": "k", "columns": ["a"], "join": 1}, "'join'"),
    ],
)
def test_an_invalid_lookup_file_is_refused_with_exit_5(
    lookup: dict[str, Any], message: str, store_url: str, home: Path, tmp_path: Path
) -> None:
    path = tmp_path / "lookup.yaml"
    path.write_text(yaml.safe_dump({"lookup": lookup}))
    done = Cli(server_env(store_url, home))("register", "feats", str(path), code=5)
    assert message in done.stderr
