"""Bounds that the service enforces and the CLI's options show, kept apart so that a command's
help and usage checks need nothing else."""

SPEC_MAX_BYTES = 64 << 10
"""The largest rollout spec read or sent."""
HISTORY_LIMIT = 20
"""Releases `history` lists unless told otherwise."""
LIST_MAX = 10_000
"""The most items any listing returns."""
TOKEN_LIFETIME_MAX_S = 366 * 86_400.0
"""The longest an API token may live: a year and a day."""
