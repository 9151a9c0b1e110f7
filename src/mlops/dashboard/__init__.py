"""The web dashboard, served by `mlops serve` under `/ui/` beside the control API: pages drawn
on the server (HTML and SVG, no script needed to read them), live updates by server-sent
events, and actions behind a session cookie with a CSRF secret."""
