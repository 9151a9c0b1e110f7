"""Closed-loop load over the Open Inference Protocol's gRPC ModelInfer: N connections, each
sending the same single-row request back to back for a fixed time. Prints the counts and latency
percentiles as JSON, like loadgen.py.

    .venv/bin/python bench/grpc_load.py 127.0.0.1:8001 MODEL --row '[0.1, …]' -c 16 -d 10

Two engines. `h2load` (nghttp2's HTTP/2 load generator, in C; the default where it is
installed): a gRPC call is an HTTP/2 POST of the length-prefixed message with
`content-type: application/grpc`, so h2load sends the request's bytes as they are. It knows
HTTP statuses, not gRPC's, which come in trailers: an answer is counted as a success by its
bytes (every success carries one answer message, a failure none), and one call through the
real client first checks that the server answers. `python` (grpcio's asyncio client, one
channel per connection) takes CPU the servers would otherwise have: compare servers side by
side in one run rather than with figures from loadgen.py.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
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


SERVICE_PATH = "/inference.GRPCInferenceService/ModelInfer"


def framed(message: Any) -> bytes:
    """A gRPC message as it goes on the wire: uncompressed flag, 4-byte length, the bytes."""
    data: bytes = message.SerializeToString()
    return b"\x00" + len(data).to_bytes(4, "big") + data


def _received_data_bytes(report: str) -> int:
    found = re.search(r"traffic: .*?\((\d+)\) data", report)
    if found is None:
        raise RuntimeError(f"h2load gave no traffic line:\n{report}")
    return int(found.group(1))


def run_h2load(target: str, message: Any, connections: int, duration_s: float) -> dict[str, Any]:
    with grpc.insecure_channel(target) as channel:
        answer = pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(message, timeout=30)
    answer_bytes = len(framed(answer))
    with tempfile.TemporaryDirectory() as tmp:
        body, log = Path(tmp) / "request", Path(tmp) / "log"
        body.write_bytes(framed(message))
        cmd = ["h2load", "-c", str(connections), "-m", "1", "-t", "1"]
        cmd += ["-D", f"{round(duration_s * 1000)}ms", "-d", str(body), "--log-file", str(log)]
        cmd += ["-H", "content-type: application/grpc", "-H", "te: trailers"]
        cmd += [f"http://{target}{SERVICE_PATH}"]
        report = subprocess.run(
            cmd, capture_output=True, text=True, check=True, timeout=duration_s + 60
        ).stdout
        rows = [line.split("\t") for line in log.read_text().splitlines() if line]
    done = len(rows)
    ok = min(done, round(_received_data_bytes(report) / answer_bytes))
    statuses = [int(row[1]) for row in rows]
    ok = min(ok, sum(1 for status in statuses if status == 200))
    ms = np.asarray([int(row[2]) / 1000 for row in rows] or [float("nan")])
    return {
        "rps": round(done / duration_s, 1),
        "ok_rps": round(ok / duration_s, 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p90_ms": round(float(np.percentile(ms, 90)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
        "requests": done,
        "errors": done - ok,
        "non_2xx": sum(1 for status in statuses if status != 200),
        "measured_s": duration_s,
        "engine": "h2load",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("target", help="host:port of the gRPC server (127.0.0.1 only)")
    parser.add_argument("model")
    parser.add_argument("--row", required=True, help="one row of features, as JSON")
    parser.add_argument("--input-name", default="input")
    parser.add_argument("-c", "--connections", type=int, default=16)
    parser.add_argument("-d", "--duration", type=float, default=10.0)
    parser.add_argument("--engine", choices=["auto", "h2load", "python"], default="auto")
    args = parser.parse_args()
    if not args.target.startswith("127.0.0.1:"):
        raise SystemExit("load goes to 127.0.0.1 only")
    message = request(args.model, json.loads(args.row), args.input_name)
    engine = args.engine
    if engine == "auto":
        engine = "h2load" if shutil.which("h2load") else "python"
    if engine == "h2load":
        result = run_h2load(args.target, message, args.connections, args.duration)
    else:
        result = asyncio.run(run(args.target, message, args.connections, args.duration))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
