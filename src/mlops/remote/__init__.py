"""Operating a store through a server's control API instead of opening it: the CLI and the
Python `Client` with a URL and a token. Built on the standard library's HTTP client, so that a
remote command starts without the store's, the API's or the numeric libraries."""
