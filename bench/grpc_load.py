"""Closed-loop load over the Open Inference Protocol's gRPC ModelInfer: N channels (one HTTP/2
connection each), each sending the same single-row request back to back for a fixed time,
from one asyncio loop. Prints the counts and latency percentiles as JSON, like loadgen.py.

    .venv/bin/python bench/grpc_load.py 127.0.0.1:8001 MODEL --row '[0.1, …]' -c 16 -d 10

Python drives the load here (no ghz on this machine): the client takes CPU the servers would
otherwise have, the same for every server measured with it, so compare servers side by side
in one run rather than with figures from loadgen.py.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

import grpc
import numpy as np
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc


def request(model: str, row: list[float], input_name: str = "input") -> Any:
    tensor = pb.ModelInferRequest.InferInputTensor(
        name=input_name, datatype="FP64", shape=[1, len(row)]
    )
    return pb.ModelInferRequest(
        model_name=model,
        inputs=[tensor],
        raw_input_contents=[np.asarray([row], dtype="<f8").tobytes()],
    )


async def _one(target: str, message: Any, until: float, latencies: list[float]) -> int:
    errors = 0
    # A subchannel pool of its own: without it every channel of this process shares one
    # connection, and a server's workers behind one port see a single client.
    options = [("grpc.use_local_subchannel_pool", 1)]
    async with grpc.aio.insecure_channel(target, options=options) as channel:
        call = pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer
        while time.perf_counter() < until:
            t0 = time.perf_counter()
            try:
                await call(message, timeout=30)
            except grpc.aio.AioRpcError:
                errors += 1
                continue
            latencies.append(time.perf_counter() - t0)
    return errors


async def run(target: str, message: Any, connections: int, duration_s: float) -> dict[str, Any]:
    latencies: list[float] = []
    start = time.perf_counter()
    until = start + duration_s
    errors = await asyncio.gather(
        *(_one(target, message, until, latencies) for _ in range(connections))
    )
    elapsed = time.perf_counter() - start
    ms = np.asarray(latencies) * 1000 if latencies else np.asarray([float("nan")])
    return {
        "rps": round(len(latencies) / elapsed, 1),
        "ok_rps": round(len(latencies) / elapsed, 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p90_ms": round(float(np.percentile(ms, 90)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
        "requests": len(latencies) + sum(errors),
        "errors": sum(errors),
        "non_2xx": sum(errors),
        "measured_s": round(elapsed, 2),
        "engine": "grpc-python",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("target", help="host:port of the gRPC server (127.0.0.1 only)")
    parser.add_argument("model")
    parser.add_argument("--row", required=True, help="one row of features, as JSON")
    parser.add_argument("--input-name", default="input")
    parser.add_argument("-c", "--connections", type=int, default=16)
    parser.add_argument("-d", "--duration", type=float, default=10.0)
    args = parser.parse_args()
    if not args.target.startswith("127.0.0.1:"):
        raise SystemExit("load goes to 127.0.0.1 only")
    message = request(args.model, json.loads(args.row), args.input_name)
    print(json.dumps(asyncio.run(run(args.target, message, args.connections, args.duration))))


if __name__ == "__main__":
    main()
