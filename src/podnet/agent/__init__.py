"""The node agent: serves CNI requests over a unix socket (server.py)."""
