"""The launcher ↔ agent wire format: one HTTP/1.1 request on the agent's unix socket.

POST /cni/<type> with the CNI variables as `X-Cni-Env-<NAME>: <value>` headers and stdin as the
body; the answer carries `X-CNI-Exit` and a body of stdout then stderr (`X-CNI-Stderr-Length`).
Shared by the launcher (which must stay on the cheapest stdlib) and the agent's server.
"""
DEFAULT_SOCKET = "/run/podnet/agent.sock"
ENV_HEADER = "X-Cni-Env-"        # X-Cni-Env-CNI_COMMAND: ADD
EXIT_HEADER = "X-CNI-Exit"
STDERR_HEADER = "X-CNI-Stderr-Length"
