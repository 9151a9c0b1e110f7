"""A deploy killed (SIGKILL) after its migration committed and before its release was written.

The deploy journals its snapshots as `pending` before the migration runs. A real `mlops
deploy` process runs a Python migration that commits its change, says so in a file and then
hangs; the test kills it there. While it lives, nothing touches its data; once it is gone, the
next `mlops deploy` of the deployment (or the controller's tick) puts the data back from the
snapshot, verified, marks the snapshot `abandoned`, records an event, and the deployment stays
on its stable release. The revision the dead deploy was to write is never reused.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from mlops import Client
from tests.data_resources import (
    MIGRATE,
    Features,
)
from tests.server import MLOPS, Cli, wait_for


def killed_after_migrating(cli: Cli, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Run `mlops deploy api --model m:2 --migration migrations:then_hang` and SIGKILL it once
    its migration has committed."""
    flag = tmp_path / "migrated.flag"
    log = tmp_path / "killed-deploy.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [MLOPS, "deploy", "api", "--model", "m:2", "--migration", "migrations:then_hang"],
            env={**cli.env, "MIGRATED_FLAG": str(flag)},
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    try:
        deadline = time.monotonic() + 120
        while not flag.exists():
            assert proc.poll() is None, f"the deploy exited early: {log.read_text()}"
            assert time.monotonic() < deadline, f"the migration did not run: {log.read_text()}"
            time.sleep(0.05)
        assert flag.read_text() == str(proc.pid)  # the migration runs in the deploy's process
        # Alive, mid-deploy: its snapshot is pending, and nobody puts its data back.
        snaps: Any = cli.json("snapshots", "api")
        assert [(s["revision"], s["status"]) for s in snaps] == [(2, "pending")]
        assert snaps[0]["details"]["deployer"]["pid"] == proc.pid
        cli("deploy", "api", "--model", "m:1")  # runs the recovery: a live deploy is left alone
        assert cli.json("snapshots", "api")[0]["status"] == "pending"  # type: ignore[index]
        busy = cli("deploy", "api", "--model", "m:3", "--migration", "migrations:half_way", code=4)
        assert "another deploy of 'api' is running its migration" in busy.stderr
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    return subprocess.CompletedProcess(proc.args, proc.returncode, log.read_text(), "")


@pytest.mark.parametrize("recover_by", ["deploy", "controller", "data restore"])
def test_a_deploy_killed_between_its_migration_and_its_release_is_put_back(
    recover_by: str,
    cli: Cli,
    features: Features,
    model_files: dict[str, Path],
    tmp_path: Path,
    home: Path,
) -> None:
    for key in ("joblib", "joblib2", "fails_live"):
        cli("register", "m", str(model_files[key]), "--trust")
    cli("deploy", "api", "--model", "m:1")
    cli("data", "add", "api", "features", *features.add_args())
    before = features.rows()
    checksum = features.checksum()

    killed_after_migrating(cli, tmp_path)
    assert features.rows() != before  # the migration committed; no release names it
    assert features.rows()[1] == (1, 3.0, 0.5)

    if recover_by == "deploy":
        again = cli("deploy", "api", "--model", "m:1")  # already serves m:1: no new release
        assert "already serves" in again.stdout, again.stdout
    elif recover_by == "data restore":
        assert cli("data", "restore").stdout == "features: restored\n"
        assert cli("data", "restore", "api").stdout == "no restore was due\n"
    else:
        log = tmp_path / "controller.log"
        with open(log, "w") as out:
            controller = subprocess.Popen(
                [MLOPS, "controller", "--tick", "0.2"],
                env=cli.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_for(
                lambda: cli.json("snapshots", "api")[0]["status"] == "abandoned",  # type: ignore[index]
                timeout=60,
                interval=0.5,
            )
        finally:
            controller.send_signal(signal.SIGTERM)
            controller.wait(30)

    assert features.rows() == before  # the data is as it was before the migration
    assert features.checksum() == checksum
    snaps: Any = cli.json("snapshots", "api")
    assert [(s["revision"], s["status"]) for s in snaps] == [(2, "abandoned")]
    restore = snaps[0]["details"]["restore"]
    assert restore["status"] == "restored"
    assert restore["checksum"] == checksum  # verified against the snapshot's checksum
    assert restore["writes_discarded"] >= 199  # the rows the migration doubled, its column
    assert not Path(snaps[0]["location"]).exists()  # put back, its files are deleted
    status: Any = cli.json("status", "api")
    assert status["revision"] == 1  # still on its stable release
    assert status["latest_revision"] == 2  # the dead deploy's revision is used up
    assert status["components"]["model"] == {"model": "m", "version": 1}

    with Client(cli.env["MLOPS_STORE"], home=home) as client:
        event = client.events("api")[0]
    assert (event.action, event.trigger) == ("recover", "crash")
    assert "deploy of revision 2 was interrupted" in (event.reason or "")
    assert (event.from_revision, event.to_revision) == (1, None)
    assert event.details["interrupted"]["revision"] == 2
    assert event.details["data"] == [
        {"resource": "features", "snapshot": snaps[0]["id"], "status": "restoring"}
    ]
    assert event.details["data_features"]["status"] == "restored"

    # The next deploy with a migration works as usual; the dead deploy's revision 2 is skipped.
    sql = tmp_path / "migrate.sql"
    sql.write_text(MIGRATE)
    done: Any = cli.json("deploy", "api", "--model", "m:2", "--migration", str(sql))
    assert done["revision"] == 3
    assert features.rows()[1] == (1, 3.0, 0.5)
    snaps = cli.json("snapshots", "api")
    assert [(s["revision"], s["status"]) for s in snaps] == [(3, "ready"), (2, "abandoned")]
    assert snaps[0]["checksum"] == checksum
    cli("rollback", "api")
    assert features.rows() == before
