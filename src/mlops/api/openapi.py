"""The OpenAPI document of the control API, built from the same table as its routes."""

from __future__ import annotations

import json
from typing import Any

from mlops import __version__
from mlops.api.operations import MOUNT, OPERATIONS, VERSION, Operation

ROLE_OF = {
    "read": "viewer",
    "operate": "operator",
    "run_code": "admin",
    "admin": "admin",
    "feedback": "scope feedback",
    "predict": "scope predict",
}
QUERY_TYPES = {"deployment": "string", "flavor": "string", "trust": "boolean", "tag": "string"}
PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
PROBLEM_SCHEMA = {
    "type": "object",
    "required": ["type", "title", "status", "detail", "kind", "exit_code"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "kind": {"type": "string", "description": "the error class, as in mlops.errors"},
        "exit_code": {"type": "integer", "description": "what the CLI exits with"},
    },
}
BEARER = {
    "type": "http",
    "scheme": "bearer",
    "bearerFormat": "mlops API token or JWT",
    "description": "An mlops API token (mlops_<key id>_<secret>), or, on a server started with "
    "--jwt-jwks, a JWT of the identity provider (RS256/ES256 by default): docs/security.md, "
    "Single sign-on.",
}
REFUSALS = {
    "400": "invalid input",
    "401": "no valid token or JWT",
    "403": "the caller's role, scope or glob does not allow it",
    "404": "not found",
    "409": "conflict",
    "429": "too many failed attempts from this address",
}


def _operation(op: Operation, schemas: dict[str, Any]) -> dict[str, Any]:
    params = [
        {"name": name[1:-1], "in": "path", "required": True, "schema": {"type": "string"}}
        for name in op.path.split("/")
        if name.startswith("{")
    ] + [
        {"name": q, "in": "query", "schema": {"type": QUERY_TYPES.get(q, "integer")}}
        for q in op.query
    ]
    doc: dict[str, Any] = {
        "operationId": op.handler.__name__,
        "summary": op.summary,
        "description": f"Needs: {ROLE_OF[op.need]}." if op.need else "Open.",
        "parameters": params,
        "responses": {
            "200": {"description": "done (201 for a new release or token, 202 for a request)"},
            **{
                code: {
                    "description": text,
                    "content": {"application/problem+json": {"schema": PROBLEM_REF}},
                }
                for code, text in REFUSALS.items()
            },
        },
    }
    if op.need:
        doc["security"] = [{"token": []}]
    if op.body is not None:
        name = op.body.__name__
        schemas[name] = op.body.model_json_schema(ref_template="#/components/schemas/{model}")
        for sub, schema in schemas[name].pop("$defs", {}).items():
            schemas[sub] = schema
        ref = {"$ref": f"#/components/schemas/{name}"}
        doc["requestBody"] = {"required": False, "content": {"application/json": {"schema": ref}}}
    return doc


def document() -> dict[str, Any]:
    schemas: dict[str, Any] = {"Problem": PROBLEM_SCHEMA}
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        paths.setdefault(MOUNT + VERSION + op.path, {})[op.method.lower()] = _operation(op, schemas)
    return {
        "openapi": "3.1.0",
        "info": {"title": "mlops control API", "version": __version__},
        "paths": paths,
        "components": {
            "schemas": dict(sorted(schemas.items())),
            "securitySchemes": {"token": BEARER},
        },
    }


if __name__ == "__main__":
    print(json.dumps(document(), indent=2))
