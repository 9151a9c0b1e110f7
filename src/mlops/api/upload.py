"""Registering a version over the API: the artifact is the request body, streamed to a staging
folder within a size limit and checked against the SHA-256 the client states; a folder (an
MLflow model) comes as a tar archive whose entries must stay inside it."""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import tarfile
import tempfile
from pathlib import Path, PurePosixPath

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from mlops.api.auth import authorize, control
from mlops.core.refs import check_name, parse_tag
from mlops.errors import BodyTooLarge, BodyTooSlow, IntegrityError, InvalidInput
from mlops.gateway.http import json_response
from mlops.service.authn import actor_of
from mlops.web.body import declared_over

TAR = "application/x-tar"
CHUNK_IDLE_S = 30.0
"""The longest an upload may send nothing before it is dropped (408)."""
ARCHIVE_MEMBERS_MAX = 10_000
SHA_HEADER = "x-content-sha256"


def upload_path(path: str) -> bool:
    """Whether a request path is an upload, paced by `CHUNK_IDLE_S` rather than the Guard's
    whole-body deadline."""
    return path.endswith("/versions") and "/models/" in path


async def register(request: Request) -> Response:
    model = check_name(request.path_params["model"], "model")
    trust = request.query_params.get("trust", "false").lower() in ("1", "true", "yes")
    who = await authorize(request, "run_code" if trust else "operate")
    expected = (request.headers.get(SHA_HEADER) or "").lower()
    if len(expected) != 64 or any(c not in "0123456789abcdef" for c in expected):
        raise InvalidInput(f"{SHA_HEADER}: the SHA-256 of the body, as 64 hex digits")
    flavor = request.query_params.get("flavor")
    tags = dict(parse_tag(t) for t in request.query_params.getlist("tag"))
    state = control(request)
    staging = state.service.settings.home / "uploads"
    staging.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(dir=staging))
    try:
        body = folder / "body"
        digest = await _receive(request, body, state.max_upload_bytes)
        if digest != expected:
            raise IntegrityError(
                f"the body's SHA-256 is {digest}, not the {expected} it was sent with"
            )
        artifact = body
        if request.headers.get("content-type", "").split(";")[0].strip() == TAR:
            artifact = await run_in_threadpool(_unpack, body, folder / "artifact")
        version = await run_in_threadpool(
            lambda: state.service.register(
                model,
                artifact,
                flavor=flavor,
                tags=tags,
                trust=trust,
                actor=actor_of(who),
                origin=f"upload sha256:{digest}",
            )
        )
    finally:
        await run_in_threadpool(shutil.rmtree, folder, True)
    return json_response(version.to_dict(), 201)


async def _receive(request: Request, target: Path, limit: int) -> str:
    """Write the body to `target` as it comes; its SHA-256. BodyTooLarge past `limit`."""
    if declared_over(request, limit):
        raise BodyTooLarge(f"an upload is at most {limit} bytes")
    sha = hashlib.sha256()
    size = 0
    chunks = request.stream().__aiter__()
    with open(target, "wb") as out:
        while True:
            try:
                chunk = await asyncio.wait_for(chunks.__anext__(), CHUNK_IDLE_S)
            except StopAsyncIteration:
                break
            except TimeoutError:
                raise BodyTooSlow(f"nothing received for {CHUNK_IDLE_S:g} s") from None
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge(f"an upload is at most {limit} bytes")
            sha.update(chunk)
            await run_in_threadpool(out.write, chunk)
    return sha.hexdigest()


def _unpack(archive: Path, into: Path) -> Path:
    """A tar archive's files and folders under `into`; InvalidInput for any entry that is not
    one (a link, a device), that would land outside, or for too many entries."""
    try:
        with tarfile.open(archive, mode="r:*") as tar:
            members = []
            for member in tar:
                members.append(member)
                if len(members) > ARCHIVE_MEMBERS_MAX:
                    raise InvalidInput(f"an archive holds at most {ARCHIVE_MEMBERS_MAX} entries")
                _check_member(member)
            into.mkdir()
            tar.extractall(into, members=members, filter="data")
    except tarfile.TarError as exc:
        raise InvalidInput(f"the body is not a readable tar archive: {exc}") from None
    return into


def _check_member(member: tarfile.TarInfo) -> None:
    name = PurePosixPath(member.name)
    if name.is_absolute() or ".." in name.parts or "\\" in member.name:
        raise InvalidInput(f"archive entry {member.name!r} would land outside the folder")
    if not (member.isfile() or member.isdir()):
        raise InvalidInput(f"archive entry {member.name!r} is not a file or a folder")
