"""What every face calls: a local store's `Service`, or a server's control API through
`RemoteService` — the same methods, answering the same records and raising the same errors."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:
    from mlops.remote.service import RemoteService
    from mlops.service import Service

    Operations: TypeAlias = Service | RemoteService
