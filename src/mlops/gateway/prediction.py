"""The one prediction path: route -> batch -> runtime -> measurement.

A transport (HTTP here; gRPC later) decodes its request, and calls the path: `route` picks
the release that serves the request (or the one pinned by version), and `predict` mirrors it
to shadows, runs it through the release's batcher, blames an input that the compared release
fails on too, and records the measurement. The transport only encodes the answer.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from mlops.core.fault import assess_fault, needs_reference, reference_revision
from mlops.core.measure import REFUSED
from mlops.core.payload import Decoded, invalid_output
from mlops.errors import NotRouted, RemoteFailed, RemoteTimedOut
from mlops.gateway.routes import DeploymentRoute, LiveTable, Target
from mlops.ratelog import RateLimitedLog
from mlops.runtime.batching import Overloaded
from mlops.runtime.lookup import UnknownKey

log = RateLimitedLog(logging.getLogger("mlops.gateway"))

Failure = tuple[str, int, str]
"""(error kind, HTTP status, message for the client)."""


class Measurements(Protocol):
    """Where the path records each request's outcome (the gateway's `Recorder`)."""

    def record(
        self,
        *,
        deployment_id: int,
        deployment: str,
        revision: int,
        version: str,
        role: str,
        latency_ms: float,
        error: str | None,
        outputs: np.ndarray | None,
        output_kind: str,
        request_id: str,
    ) -> None: ...


@dataclass(frozen=True)
class Routed:
    """A request on its way: the release chosen to serve it, and how it was chosen."""

    route: DeploymentRoute
    target: Target
    request_id: str
    role: str
    """`live` (routed by the split, judged) or `pinned` (asked for by version, never judged)."""
    key: str | None
    draw: float
    started: float


@dataclass(frozen=True)
class Answer:
    outputs: np.ndarray | None
    failure: Failure | None


class PredictionPath:
    """Serves requests against the live table that `table` returns at each call."""

    def __init__(
        self, table: Callable[[], LiveTable], recorder: Measurements, timeout_s: float
    ) -> None:
        self.table = table
        self.recorder = recorder
        self.timeout_s = timeout_s
        self._shadows: set[asyncio.Task[None]] = set()

    def route(
        self, name: str, request_id: str, *, key: str | None, version: str | None = None
    ) -> Routed:
        """The release that serves this request; NotRouted (a message for the client)."""
        route = self.table().deployments.get(name)
        if route is None:
            raise NotRouted(f"deployment {name!r} not found")
        started = time.perf_counter()
        draw = random.random()
        if version is None:
            target = route.targets[route.split.pick(key, draw)]
            return Routed(route, target, request_id, "live", key, draw, started)
        # Asked for by version, not routed: measured apart, never judged.
        found = pinned_target(route, version)
        if found is None:
            raise NotRouted(f"no release of {name!r} serves version {version[:20]!r}")
        return Routed(route, found, request_id, "pinned", key, draw, started)

    def refuse(self, routed: Routed) -> None:
        """Count a request refused before it reached the model (its body or payload)."""
        self._record(routed.target, routed.started, REFUSED, None, routed.request_id, routed.role)

    async def predict(self, routed: Routed, decoded: Decoded) -> Answer:
        """The answer to a decoded request, mirrored to shadows, measured."""
        route, target = routed.route, routed.target
        if routed.role == "live":
            for shadow_rev in route.split.shadow_targets(routed.key, routed.draw):
                shadow = route.targets.get(shadow_rev)
                if shadow is not None:
                    self._spawn_shadow(route, shadow, decoded, routed.request_id)
        outputs, failure = await self._run(target, decoded, routed.request_id)
        if failure is not None:
            if routed.role == "live":
                failure = await self._blame(route, target, decoded, failure)
            self._record(target, routed.started, failure[0], None, routed.request_id, routed.role)
            return Answer(None, failure)
        assert outputs is not None
        self._record(target, routed.started, None, outputs, routed.request_id, routed.role)
        return Answer(outputs, None)

    async def drain(self, timeout_s: float) -> None:
        """Let the shadow requests in flight end (within `timeout_s`)."""
        if self._shadows:
            await asyncio.wait(self._shadows, timeout=timeout_s)

    async def _blame(
        self, route: DeploymentRoute, target: Target, decoded: Decoded, failure: Failure
    ) -> Failure:
        """The failure as counted: the input's (refused) when the release this one is compared
        with fails on the same rows too, else as it was."""
        if not needs_reference(failure[0]):
            return failure
        reference_rev = reference_revision(route.split, route.stable_revision, target.revision)
        reference = route.targets.get(reference_rev) if reference_rev is not None else None
        if reference is None:
            return failure
        _, reference_failure = await self._run(reference, decoded, None)
        failed = reference_failure is not None and needs_reference(reference_failure[0])
        kind = assess_fault(failure[0], failed)
        if kind == failure[0]:
            return failure
        return (
            kind,
            422,
            f"this input cannot be served: revision {reference.revision} fails on it too",
        )

    async def _run(
        self, target: Target, decoded: Decoded, request_id: str | None
    ) -> tuple[np.ndarray | None, Failure | None]:
        try:
            future = target.batcher.submit(decoded.rows)
        except Overloaded as exc:
            return None, (
                "rejected",
                503,
                f"{target.deployment} is overloaded ({exc}); retry later",
            )
        try:
            outputs = await asyncio.wait_for(asyncio.shield(future), self.timeout_s)
        except TimeoutError:
            return None, ("timeout", 504, f"the model did not answer within {self.timeout_s:g} s")
        except UnknownKey as exc:
            return None, ("rejected", exc.http_status, str(exc))
        except RemoteTimedOut as exc:
            log_failure(target, request_id, exc)
            return None, ("timeout", 504, "the model server did not answer in time")
        except RemoteFailed as exc:
            log_failure(target, request_id, exc)
            return None, (
                "exception",
                502,
                "the model server failed on this request (see the gateway log)",
            )
        except Exception as exc:
            log_failure(target, request_id, exc)
            return None, (
                "exception",
                500,
                "the model failed on this request (see the gateway log)",
            )
        problem = invalid_output(outputs)
        if problem is not None:
            log_failure(target, request_id, ValueError(problem))
            return None, ("invalid_output", 500, problem)
        return outputs, None

    def _record(
        self,
        target: Target,
        started: float,
        error: str | None,
        outputs: np.ndarray | None,
        request_id: str,
        role: str = "live",
    ) -> None:
        self.recorder.record(
            deployment_id=target.deployment_id,
            deployment=target.deployment,
            revision=target.revision,
            version=target.pipeline.primary.label,
            role=role,
            latency_ms=(time.perf_counter() - started) * 1000.0,
            error=error,
            outputs=outputs,
            output_kind=target.pipeline.output_kind,
            request_id=request_id,
        )

    def _spawn_shadow(
        self, route: DeploymentRoute, target: Target, decoded: Decoded, request_id: str
    ) -> None:
        async def run() -> None:
            started = time.perf_counter()
            outputs, failure = await self._run(target, decoded, request_id)
            if failure is not None:
                failure = await self._blame(route, target, decoded, failure)
            kind = failure[0] if failure else None
            self._record(target, started, kind, outputs, request_id, "shadow")

        task = asyncio.get_running_loop().create_task(run())
        self._shadows.add(task)
        task.add_done_callback(self._shadows.discard)


def log_failure(target: Target, request_id: str | None, exc: BaseException) -> None:
    """A model's failure, with its cause, for the operator (never for the client): one line
    per release and kind of failure every few seconds. Without a request id, the release
    ran as the reference for another's failure."""
    log.log(
        logging.WARNING,
        f"{target.deployment_id}:{target.revision}:{type(exc).__name__}",
        "%s revision %s failed on request %s: %s: %s",
        target.deployment,
        target.revision,
        request_id or "(as the reference for another release's failure)",
        type(exc).__name__,
        exc,
    )


def pinned_target(route: DeploymentRoute, version: str) -> Target | None:
    """The routed release that serves `version` of the primary model, the stable one first."""
    if not (version.isascii() and version.isdigit() and len(version) <= 18):
        return None
    serving = [
        t for t in route.targets.values() if t.pipeline.primary.record.version == int(version)
    ]
    return next((t for t in serving if t.revision == route.stable_revision), None) or next(
        iter(serving), None
    )
