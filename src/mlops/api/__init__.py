"""The control API: every operation of the CLI as JSON over HTTP under `/api/v1`, for callers
holding an API token. A face like the CLI: it calls the service, never the store."""
