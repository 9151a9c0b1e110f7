"""What the HTTP faces share (the gateway and the control API): access checks by token."""
