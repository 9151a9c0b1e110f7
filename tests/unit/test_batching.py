import asyncio
import logging
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from mlops.runtime.batching import MicroBatcher, Overloaded


class Recording:
    def __init__(self, delay: float = 0.01, fail_on: float | None = None) -> None:
        self.calls: list[int] = []
        self.delay = delay
        self.fail_on = fail_on
        self.lock = threading.Lock()

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        import time

        with self.lock:
            self.calls.append(rows.shape[0])
        time.sleep(self.delay)
        if self.fail_on is not None and (rows[:, 0] == self.fail_on).any():
            raise ValueError("bad row")
        return rows[:, 0] * 2


async def _gather(batcher: MicroBatcher, n: int) -> list[np.ndarray]:
    return await asyncio.gather(*(batcher.submit(np.array([[float(i)]])) for i in range(n)))


def test_concurrent_requests_share_predict_calls() -> None:
    fn = Recording()
    with ThreadPoolExecutor(1) as pool:
        batcher = MicroBatcher(fn, pool, max_batch_rows=16)
        results = asyncio.run(_gather(batcher, 40))
    assert [r.tolist() for r in results] == [[2.0 * i] for i in range(40)]
    assert sum(fn.calls) == 40
    assert max(fn.calls) <= 16
    assert len(fn.calls) < 40 / 4


def test_a_lone_request_runs_at_once_without_waiting() -> None:
    fn = Recording(delay=0.0)
    with ThreadPoolExecutor(1) as pool:
        batcher = MicroBatcher(fn, pool)
        assert asyncio.run(_gather(batcher, 1))[0].tolist() == [0.0]
    assert fn.calls == [1]


def test_one_bad_row_fails_only_its_own_request() -> None:
    fn = Recording(fail_on=3.0)

    async def run() -> list[object]:
        batcher = MicroBatcher(fn, pool, max_batch_rows=64)
        futures = [batcher.submit(np.array([[float(i)]])) for i in range(6)]
        return await asyncio.gather(*futures, return_exceptions=True)

    with ThreadPoolExecutor(1) as pool:
        results = asyncio.run(run())
    assert isinstance(results[3], ValueError)
    assert [r.tolist() for i, r in enumerate(results) if i != 3] == [
        [0.0],
        [2.0],
        [4.0],
        [8.0],
        [10.0],
    ]  # type: ignore[union-attr]


def test_full_queue_is_refused() -> None:
    fn = Recording(delay=0.05)

    async def run() -> None:
        batcher = MicroBatcher(fn, pool, max_batch_rows=1, max_queue_rows=3)
        pending = [batcher.submit(np.array([[1.0]])) for _ in range(3)]
        with pytest.raises(Overloaded):
            batcher.submit(np.array([[1.0]]))
        await asyncio.gather(*pending)

    with ThreadPoolExecutor(1) as pool:
        asyncio.run(run())


def test_wrong_output_length_is_an_error() -> None:
    async def run() -> None:
        batcher = MicroBatcher(lambda rows: np.zeros(1), pool)
        with pytest.raises(ValueError, match="returned 1 outputs for 2 rows"):
            await batcher.submit(np.zeros((2, 1)))

    with ThreadPoolExecutor(1) as pool:
        asyncio.run(run())


def test_a_failed_batch_is_logged_at_warning_with_its_cause(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fn = Recording(delay=0.01, fail_on=3.0)
    fn.labels = "model=logged:1"  # type: ignore[attr-defined]  # as a Pipeline names itself

    async def run() -> list[object]:
        batcher = MicroBatcher(fn, pool, max_batch_rows=64)
        futures = [batcher.submit(np.array([[float(i)]])) for i in range(6)]
        return await asyncio.gather(*futures, return_exceptions=True)

    with caplog.at_level(logging.WARNING, logger="mlops.runtime"), ThreadPoolExecutor(1) as pool:
        asyncio.run(run())
    (line,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "a batch of 6 requests to model=logged:1" in line
    assert "ValueError: bad row" in line


def test_a_bounded_pipeline_runs_on_the_event_loop_and_one_bad_row_still_fails_alone() -> None:
    threads: list[str] = []
    fn = Recording(delay=0.0, fail_on=3.0)

    def recorded(rows: np.ndarray) -> np.ndarray:
        threads.append(threading.current_thread().name)
        return fn(rows)

    async def run() -> list[object]:
        batcher = MicroBatcher(recorded, max_batch_rows=64, inline=True)
        futures = [batcher.submit(np.array([[float(i)]])) for i in range(6)]
        out = await asyncio.gather(*futures, return_exceptions=True)
        batcher.close()
        return out

    results = asyncio.run(run())
    assert set(threads) == {threading.main_thread().name}
    assert isinstance(results[3], ValueError)
    assert [r.tolist() for i, r in enumerate(results) if i != 3] == [  # type: ignore[union-attr]
        [2.0 * i] for i in (0, 1, 2, 4, 5)
    ]


def test_only_pipelines_of_bounded_cost_are_bounded() -> None:
    from datetime import UTC, datetime

    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    from mlops.records import ModelVersion
    from mlops.registry.params import parse_params
    from mlops.runtime.pipeline import make_pipeline
    from mlops.runtime.version import LoadedVersion

    x = np.random.default_rng(0).normal(size=(40, 3))
    y = (x[:, 0] > 0).astype(int)

    def loaded(model: object, flavor: str, n: int) -> LoadedVersion:
        record = ModelVersion(
            n,
            "m",
            n,
            flavor,
            "0" * 64,
            "file",
            1,
            {"inputs": [], "outputs": []},
            {},
            None,
            True,
            "active",
            None,
            datetime.now(UTC),
            "t",
        )
        return LoadedVersion(record, model)

    logreg = loaded(LogisticRegression().fit(x, y), "sklearn", 1)
    forest = loaded(RandomForestClassifier(n_estimators=3).fit(x, y), "sklearn", 2)
    threshold = loaded(parse_params(b'{"threshold": 0.5}', "t"), "params", 3)
    assert make_pipeline([("model", logreg)]).bounded
    assert make_pipeline([("model", logreg), ("postprocessor", threshold)]).bounded
    assert not make_pipeline([("model", forest)]).bounded
