"""Programs of other projects' clients, run in venvs of their own against a real server."""
