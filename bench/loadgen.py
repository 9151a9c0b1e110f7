"""Closed-loop HTTP load generator: wrk with a Lua script when installed, else asyncio + httpx.

Every connection sends the same POST body back to back for a fixed time; the result is one dict:

    {"rps", "p50_ms", "p90_ms", "p99_ms", "requests", "errors", "non_2xx", ...}

- ``requests``: responses received (any status).
- ``non_2xx``: responses whose status was not 2xx (with wrk: status >= 400, what wrk counts).
- ``errors``: every request that did not succeed: ``non_2xx`` plus connect/read/write errors and
  timeouts (those are also given apart as ``socket_errors`` and ``timeouts``).
- ``rps``: ``requests`` / measured duration; ``ok_rps`` counts 2xx responses only.

Server and client share the machine's cores, so wrk runs with one thread by default. Point it only
at 127.0.0.1 / localhost: the run is bounded by ``duration_s``.

As a module::

    from loadgen import run_load          # with bench/ on sys.path
    r = run_load("http://127.0.0.1:8000/v1/models/m:predict", body, connections=16, duration_s=15)

As a CLI::

    python bench/loadgen.py URL --body '{"instances": [[0.1, ...]]}' -c 16 -d 15
    python bench/loadgen.py URL --body-file body.json -c 64 -d 15 --engine python
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

RESULT_MARK = "BENCH_JSON "

_LUA_TEMPLATE = """
wrk.method = "POST"
local f = assert(io.open({body_path}, "rb"))
wrk.body = f:read("*a")
f:close()
{header_lines}

done = function(summary, latency, requests)
  local e = summary.errors
  local function pct(p) return latency:percentile(p) / 1000.0 end
  io.write(string.format(
    '{mark}{{"requests": %d, "duration_us": %d, "bytes": %d, "connect_errors": %d, ' ..
    '"read_errors": %d, "write_errors": %d, "timeouts": %d, "status_errors": %d, ' ..
    '"p50_ms": %.3f, "p90_ms": %.3f, "p99_ms": %.3f, "mean_ms": %.3f, "max_ms": %.3f}}\\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,
    e.timeout, e.status, pct(50), pct(90), pct(99), latency.mean / 1000.0,
    latency.max / 1000.0))
end
"""


async def read_response(reader: asyncio.StreamReader) -> tuple[int, int]:
    """Read one HTTP/1.1 answer off a keep-alive connection: (status, X-Release-Revision or -1)."""
    status_line = await reader.readline()
    length, revision = 0, -1
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"x-release-revision":
            revision = int(value)
    await reader.readexactly(length)
    return int(status_line.split()[1]), revision


def _lua_string(value: str) -> str:
    # A JSON string literal of printable text is a valid Lua string literal.
    return json.dumps(value)


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def run_load(
    url: str,
    body: bytes,
    connections: int,
    duration_s: float,
    threads: int = 1,
    headers: dict[str, str] | None = None,
    *,
    engine: str = "auto",
    timeout_s: float = 10.0,
) -> dict[str, Any]:
    """Send ``body`` to ``url`` from ``connections`` keep-alive connections for ``duration_s``.

    ``engine`` is "wrk", "python" or "auto" (wrk when on PATH). Returns the dict described in
    the module docstring, plus "engine", "connections" and "duration_s".
    """
    if connections < 1 or duration_s <= 0:
        raise ValueError("connections must be >= 1 and duration_s > 0")
    hdrs = {"Content-Type": "application/json"}
    hdrs.update(headers or {})
    if engine == "auto":
        engine = "wrk" if wrk_available() else "python"
    if engine == "wrk":
        result = _run_wrk(url, body, connections, duration_s, threads, hdrs, timeout_s)
    elif engine == "python":
        result = asyncio.run(_run_python(url, body, connections, duration_s, hdrs, timeout_s))
    else:
        raise ValueError(f"unknown engine {engine!r}")
    result.update(engine=engine, connections=connections, duration_s=duration_s)
    return result


def _run_wrk(
    url: str,
    body: bytes,
    connections: int,
    duration_s: float,
    threads: int,
    headers: dict[str, str],
    timeout_s: float,
) -> dict[str, Any]:
    threads = max(1, min(threads, connections))
    with tempfile.TemporaryDirectory(prefix="loadgen-") as tmp:
        body_path = Path(tmp) / "body"
        body_path.write_bytes(body)
        header_lines = "\n".join(
            f"wrk.headers[{_lua_string(k)}] = {_lua_string(v)}" for k, v in headers.items()
        )
        script = Path(tmp) / "post.lua"
        script.write_text(
            _LUA_TEMPLATE.format(
                body_path=_lua_string(str(body_path)),
                header_lines=header_lines,
                mark=RESULT_MARK,
            )
        )
        # wrk takes whole seconds ("s", "m", "h" units only).
        duration_arg = f"{max(1, math.ceil(duration_s))}s"
        cmd = [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{duration_arg}",
            f"--timeout={max(1, math.ceil(timeout_s))}s",
            "-s",
            str(script),
            url,
        ]
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=duration_s + timeout_s + 30, check=False
        )
    line = next(
        (ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT_MARK)),
        None,
    )
    if proc.returncode != 0 or line is None:
        raise RuntimeError(
            f"wrk failed (exit {proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}"
        )
    raw = json.loads(line[len(RESULT_MARK) :])
    duration = raw["duration_us"] / 1e6
    socket_errors = raw["connect_errors"] + raw["read_errors"] + raw["write_errors"]
    non_2xx = raw["status_errors"]
    requests = raw["requests"]
    return {
        "rps": requests / duration if duration else 0.0,
        "ok_rps": (requests - non_2xx) / duration if duration else 0.0,
        "p50_ms": raw["p50_ms"],
        "p90_ms": raw["p90_ms"],
        "p99_ms": raw["p99_ms"],
        "mean_ms": raw["mean_ms"],
        "max_ms": raw["max_ms"],
        "requests": requests,
        "errors": non_2xx + socket_errors + raw["timeouts"],
        "non_2xx": non_2xx,
        "socket_errors": socket_errors,
        "timeouts": raw["timeouts"],
        "measured_s": duration,
    }


def _percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of an ascending list (0.0 for an empty one)."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(p / 100.0 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


async def _run_python(
    url: str,
    body: bytes,
    connections: int,
    duration_s: float,
    headers: dict[str, str],
    timeout_s: float,
) -> dict[str, Any]:
    import httpx

    latencies: list[float] = []
    counts = {"non_2xx": 0, "socket_errors": 0, "timeouts": 0}
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(limits=limits, timeout=timeout_s, headers=headers) as client:
        start = time.perf_counter()
        deadline = start + duration_s

        async def worker() -> None:
            while True:
                t0 = time.perf_counter()
                if t0 >= deadline:
                    return
                try:
                    resp = await client.post(url, content=body)
                except httpx.TimeoutException:
                    counts["timeouts"] += 1
                    continue
                except httpx.HTTPError:
                    counts["socket_errors"] += 1
                    await asyncio.sleep(0.01)
                    continue
                latencies.append(time.perf_counter() - t0)
                if not 200 <= resp.status_code < 300:
                    counts["non_2xx"] += 1

        await asyncio.gather(*(worker() for _ in range(connections)))
        duration = time.perf_counter() - start
    latencies.sort()
    ms = [x * 1000.0 for x in latencies]
    requests = len(latencies)
    return {
        "rps": requests / duration,
        "ok_rps": (requests - counts["non_2xx"]) / duration,
        "p50_ms": _percentile(ms, 50),
        "p90_ms": _percentile(ms, 90),
        "p99_ms": _percentile(ms, 99),
        "mean_ms": sum(ms) / requests if requests else 0.0,
        "max_ms": ms[-1] if ms else 0.0,
        "requests": requests,
        "errors": counts["non_2xx"] + counts["socket_errors"] + counts["timeouts"],
        "non_2xx": counts["non_2xx"],
        "socket_errors": counts["socket_errors"],
        "timeouts": counts["timeouts"],
        "measured_s": duration,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url")
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--body", help="request body (JSON text)")
    src.add_argument("--body-file", type=Path, help="file holding the request body")
    parser.add_argument("-c", "--connections", type=int, default=16)
    parser.add_argument("-d", "--duration", type=float, default=15.0, help="seconds")
    parser.add_argument("-t", "--threads", type=int, default=1, help="wrk threads")
    parser.add_argument(
        "-H", "--header", action="append", default=[], help="extra header 'Name: value'"
    )
    parser.add_argument("--engine", choices=["auto", "wrk", "python"], default="auto")
    parser.add_argument("--timeout", type=float, default=10.0, help="per-request seconds")
    args = parser.parse_args(argv)
    body = args.body.encode() if args.body is not None else args.body_file.read_bytes()
    headers = dict(h.split(":", 1) for h in args.header)
    headers = {k.strip(): v.strip() for k, v in headers.items()}
    result = run_load(
        args.url,
        body,
        args.connections,
        args.duration,
        threads=args.threads,
        headers=headers,
        engine=args.engine,
        timeout_s=args.timeout,
    )
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 1 if result["requests"] == 0 else 0


if __name__ == "__main__":
    raise SystemExit(main())
