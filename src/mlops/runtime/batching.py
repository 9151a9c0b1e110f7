"""Adaptive micro-batching: concurrent requests to one pipeline share one predict call.

While a batch runs, requests that arrive queue up; when it ends, everything queued (up to
`max_batch_rows`) goes in the next call. Under light load a request runs at once, alone;
under heavy load batches grow by themselves. `max_wait_ms` adds a deliberate wait to
gather more rows, for models whose cost per call dominates.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor

import numpy as np

from mlops.errors import Overloaded as Overloaded
from mlops.ratelog import RateLimitedLog

log = RateLimitedLog(logging.getLogger("mlops.runtime"))


class MicroBatcher:
    def __init__(
        self,
        fn: Callable[[np.ndarray], np.ndarray],
        executor: Executor | None = None,
        *,
        max_batch_rows: int = 64,
        max_wait_ms: float = 0.0,
        max_queue_rows: int = 2048,
        inline: bool = False,
    ) -> None:
        self.fn = fn
        # A pipeline of bounded cost (`Pipeline.bounded`) runs on the event loop: the hop to a
        # thread and back would cost more than the call.
        self.inline = inline
        # One thread per pipeline by default: it runs one call at a time anyway, and a model
        # that hangs then holds only its own thread, never another deployment's.
        self._owns_executor = executor is None
        self.executor = executor or ThreadPoolExecutor(1, thread_name_prefix="mlops-predict")
        self.max_batch_rows = max_batch_rows
        self.max_wait_s = max_wait_ms / 1000.0
        self.max_queue_rows = max_queue_rows
        self._queue: deque[tuple[np.ndarray, asyncio.Future[np.ndarray]]] = deque()
        self._queued_rows = 0
        self._draining = False
        self._task: asyncio.Task[None] | None = None
        self.batches = 0
        self.rows = 0

    def close(self) -> None:
        """Let the batcher's own thread go once its current call ends (a hung call is abandoned)."""
        if self._owns_executor:
            self.executor.shutdown(wait=False, cancel_futures=True)

    @property
    def queued_rows(self) -> int:
        return self._queued_rows

    def submit(self, rows: np.ndarray) -> asyncio.Future[np.ndarray]:
        """A future for the outputs of `rows`; raises Overloaded when the queue is full."""
        n = rows.shape[0]
        if self._queued_rows and self._queued_rows + n > self.max_queue_rows:
            raise Overloaded(f"{self._queued_rows} rows already queued")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[np.ndarray] = loop.create_future()
        future.add_done_callback(_retrieve)
        self._queue.append((rows, future))
        self._queued_rows += n
        if not self._draining:
            self._draining = True
            self._task = loop.create_task(self._drain())
        return future

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._queue:
                if self.max_wait_s and self._queued_rows < self.max_batch_rows:
                    await asyncio.sleep(self.max_wait_s)
                batch = self._take()
                await self._run(loop, batch)
        finally:
            self._draining = False

    def _take(self) -> list[tuple[np.ndarray, asyncio.Future[np.ndarray]]]:
        batch = [self._queue.popleft()]
        rows = batch[0][0].shape[0]
        while self._queue and rows + self._queue[0][0].shape[0] <= self.max_batch_rows:
            item = self._queue.popleft()
            batch.append(item)
            rows += item[0].shape[0]
        self._queued_rows -= rows
        return batch

    async def _run(
        self,
        loop: asyncio.AbstractEventLoop,
        batch: list[tuple[np.ndarray, asyncio.Future[np.ndarray]]],
    ) -> None:
        live = [(rows, fut) for rows, fut in batch if not fut.cancelled()]
        if not live:
            return
        self.batches += 1
        self.rows += sum(rows.shape[0] for rows, _ in live)
        stacked = live[0][0] if len(live) == 1 else np.concatenate([rows for rows, _ in live])
        try:
            out = await self._call(loop, stacked)
            if out.shape[0] != stacked.shape[0]:
                raise ValueError(
                    f"the model returned {out.shape[0]} outputs for {stacked.shape[0]} rows"
                )
        except Exception as exc:
            if len(live) == 1:
                _settle(live[0][1], exc=exc)
                return
            # One bad row must not fail its neighbours: run each request alone.
            name = getattr(self.fn, "labels", "a pipeline")
            log.log(
                logging.WARNING,
                f"batch:{name}:{type(exc).__name__}",
                "a batch of %d requests to %s failed (%s: %s); each runs alone",
                len(live),
                name,
                type(exc).__name__,
                exc,
            )
            for rows, fut in live:
                try:
                    _settle(fut, await self._call(loop, rows))
                except Exception as single:
                    _settle(fut, exc=single)
            return
        start = 0
        for rows, fut in live:
            end = start + rows.shape[0]
            _settle(fut, out[start:end])
            start = end

    async def _call(self, loop: asyncio.AbstractEventLoop, rows: np.ndarray) -> np.ndarray:
        if self.inline:
            return self.fn(rows)
        return await loop.run_in_executor(self.executor, self.fn, rows)


def _retrieve(future: asyncio.Future[np.ndarray]) -> None:
    """Mark a failure as seen even when its request gave up waiting (timed out)."""
    if not future.cancelled():
        future.exception()


def _settle(
    future: asyncio.Future[np.ndarray],
    value: np.ndarray | None = None,
    exc: BaseException | None = None,
) -> None:
    if future.done():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        assert value is not None
        future.set_result(value)
