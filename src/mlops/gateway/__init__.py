"""The gateway: one ASGI app serving every deployment over the KServe V1 and V2 protocols."""
