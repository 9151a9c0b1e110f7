"""A bare Starlette endpoint serving one scikit-learn model: the baseline for gateway overhead.

    POST /v1/models/{name}:predict   {"instances": [[...], ...]}  ->  {"predictions": [...]}
    GET  /v1/models/{name}           {"name": ..., "ready": true}
    GET  /healthz                    "ok"

The model is a joblib file given by BENCH_MODEL_PATH (or the first argument of ``main``), served
under BENCH_MODEL_NAME (default "model"). ``model.predict`` runs in Starlette's thread pool, as
a serving layer that must not block its event loop would do; BENCH_MODEL_THREADS=N caps the
predictions running at once in a worker (default: Starlette's pool, 40 threads). A random forest
predicts through many short GIL-releasing calls, so several at once in one process thrash on
the GIL: a cap of 1 gives more throughput for it. Bodies are parsed and written with
orjson (a dependency of the project) and uvicorn runs without access log, on uvloop + httptools
when installed. Each worker process loads its own copy of the model at startup.

    BENCH_MODEL_PATH=forest.joblib .venv/bin/uvicorn bench.bare_starlette:app --workers 2 \\
        --port 8000 --no-access-log
    .venv/bin/python bench/bare_starlette.py forest.joblib --workers 2 --port 8000
"""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import joblib
import numpy as np
import orjson
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

MODEL_PATH_ENV = "BENCH_MODEL_PATH"
MODEL_NAME_ENV = "BENCH_MODEL_NAME"
MODEL_THREADS_ENV = "BENCH_MODEL_THREADS"

_state: dict[str, Any] = {}


def _json(payload: Any, status_code: int = 200) -> Response:
    return Response(orjson.dumps(payload), status_code=status_code, media_type="application/json")


@contextlib.asynccontextmanager
async def lifespan(_app: Starlette) -> AsyncIterator[None]:
    path = os.environ.get(MODEL_PATH_ENV)
    if not path:
        raise RuntimeError(f"set {MODEL_PATH_ENV} to a joblib model file")
    _state["model"] = joblib.load(path)
    _state["name"] = os.environ.get(MODEL_NAME_ENV, "model")
    threads = os.environ.get(MODEL_THREADS_ENV)
    _state["limiter"] = anyio.CapacityLimiter(int(threads)) if threads else None
    yield
    _state.clear()


async def predict(request: Request) -> Response:
    if request.path_params["name"] != _state["name"]:
        return _json({"error": "model not found"}, 404)
    try:
        instances = orjson.loads(await request.body())["instances"]
        x = np.asarray(instances, dtype=np.float64)
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return _json({"error": 'body must be {"instances": [[...], ...]}'}, 400)
    if x.ndim != 2:
        return _json({"error": "instances must be a list of rows"}, 400)
    if _state["limiter"] is None:
        predictions = await run_in_threadpool(_state["model"].predict, x)
    else:
        predictions = await anyio.to_thread.run_sync(
            _state["model"].predict, x, limiter=_state["limiter"]
        )
    return _json({"predictions": predictions.tolist()})


async def model_status(request: Request) -> Response:
    name = request.path_params["name"]
    if name != _state["name"]:
        return _json({"error": "model not found"}, 404)
    return _json({"name": name, "ready": True})


async def healthz(_request: Request) -> Response:
    return PlainTextResponse("ok")


app = Starlette(
    routes=[
        Route("/v1/models/{name}:predict", predict, methods=["POST"]),
        Route("/v1/models/{name}", model_status, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
    ],
    lifespan=lifespan,
)


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description="Serve one joblib model with bare Starlette.")
    parser.add_argument("model", type=Path, help="joblib file holding a fitted estimator")
    parser.add_argument("--name", default="model", help="model name in the URL")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--model-threads", type=int, help="cap on predictions at once per worker")
    args = parser.parse_args(argv)
    if args.model_threads:
        os.environ[MODEL_THREADS_ENV] = str(args.model_threads)
    os.environ[MODEL_PATH_ENV] = str(args.model.resolve())
    os.environ[MODEL_NAME_ENV] = args.name
    uvicorn.run(
        "bare_starlette:app",
        app_dir=str(Path(__file__).resolve().parent),
        host=args.host,
        port=args.port,
        workers=args.workers,
        access_log=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
