"""What the HTTP faces share (the gateway and the control API): reading request bodies,
and access checks by token."""
