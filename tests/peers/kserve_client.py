"""KServe's own Python client (kserve 0.21, its async REST and gRPC clients) against a V2
server: run in a venv with kserve installed; prints what it saw as JSON.

    python kserve_client.py HTTP_URL GRPC_TARGET MODEL ROWS_JSON
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import numpy as np
from kserve import InferenceGRPCClient, InferenceRESTClient, InferInput, InferRequest, RESTConfig


def request(model: str, rows: list[list[float]]) -> Any:
    tensor = InferInput(name="input", shape=[len(rows), len(rows[0])], datatype="FP64")
    tensor.set_data_from_numpy(np.asarray(rows, dtype="float64"))
    return InferRequest(model_name=model, infer_inputs=[tensor], request_id="kserve-1")


async def main(url: str, target: str, model: str, rows: list[list[float]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    rest = InferenceRESTClient(RESTConfig(protocol="v2", retries=1, timeout=30))
    try:
        out["rest_live"] = await rest.is_server_live(url)
        out["rest_model_ready"] = await rest.is_model_ready(url, model)
        answer = await rest.infer(url, request(model, rows), model_name=model)
        out["rest_id"] = answer.id
        out["rest_predictions"] = answer.outputs[0].as_numpy().tolist()
        try:
            await rest.infer(url, request("nope", rows), model_name="nope")
            out["rest_unknown"] = "answered"
        except Exception as exc:  # the client's own error for a 404
            out["rest_unknown"] = type(exc).__name__ + ": " + str(exc)
    finally:
        await rest.close()
    grpc_client = InferenceGRPCClient(target, retries=2, timeout=30)
    try:
        out["grpc_live"] = await grpc_client.is_server_live()
        out["grpc_model_ready"] = await grpc_client.is_model_ready(model)
        answer = await grpc_client.infer(request(model, rows))
        out["grpc_id"] = answer.id
        out["grpc_predictions"] = answer.outputs[0].as_numpy().tolist()
        try:
            await grpc_client.infer(request("nope", rows))
            out["grpc_unknown"] = "answered"
        except Exception as exc:  # grpc's AioRpcError, with its status code
            code = getattr(exc, "code", None)
            out["grpc_unknown"] = str(code()) if callable(code) else type(exc).__name__
    finally:
        await grpc_client.close()
    return out


if __name__ == "__main__":
    http_url, grpc_target, model_name, rows_json = sys.argv[1:5]
    found = asyncio.run(main(http_url, grpc_target, model_name, json.loads(rows_json)))
    print(json.dumps(found))
