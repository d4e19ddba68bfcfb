"""The launcher ↔ agent wire format: one HTTP/1.1 request on the agent's unix socket.

    POST /cni/<type>   Content-Length: E + S   X-Cni-Env-Length: E
    body: the CNI variables as NAME=VALUE NUL-terminated (E bytes), then stdin (S bytes)

The variables travel in the body, byte for byte, not as headers: a header is limited in length
and loses leading and trailing whitespace, so the agent would answer some requests differently
from the in-process path.  The answer carries `X-CNI-Exit` and a body of stdout then stderr
(`X-CNI-Stderr-Length`).  Shared by the launcher (which must stay on the cheapest stdlib) and the
agent's server.
"""
DEFAULT_SOCKET = "/run/podnet/agent.sock"
# the CNI versions podnet speaks (here, not in cni/version.py, so a launcher answers VERSION
# without importing anything more)
SUPPORTED_VERSIONS: tuple[str, ...] = ("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
LATEST_VERSION = "1.1.0"
ENV_LENGTH_HEADER = "X-Cni-Env-Length"
EXIT_HEADER = "X-CNI-Exit"
STDERR_HEADER = "X-CNI-Stderr-Length"

# Size limits, the same on both paths.  A runtime sends an ADD's result back inside the DEL and
# CHECK configs (prevResult), so whatever ADD accepts, DEL and CHECK must accept with the result
# in it: ADD's config (its prevResult aside) is held to MAX_CONFIG, its result to MAX_RESULT as a
# runtime may re-encode it (cni/skel.py: a larger one is undone and refused), and any stdin —
# DEL, CHECK, a chained plugin's ADD — may carry both.
MAX_CONFIG = 4 * 1024 * 1024     # a network config, its prevResult aside
MAX_RESULT = 4 * 1024 * 1024     # a result, as Go's encoder would write it back in prevResult
PREV_RESULT_SLACK = 64 * 1024    # the "prevResult" key and a runtime's own re-encoding of the config
MAX_STDIN = MAX_CONFIG + MAX_RESULT + PREV_RESULT_SLACK
MAX_ENV = 4 * 1024 * 1024        # the CNI variables (Linux caps a whole environment at 2 MiB)
MAX_BODY = MAX_STDIN + MAX_ENV + 1


def encode_env(env: dict[str, str]) -> bytes:
    """NAME=VALUE\\0 …; a NUL cannot occur in a real environment, so the split is exact."""
    return b"".join(f"{k}={v}".encode("utf-8", "surrogateescape") + b"\0" for k, v in env.items())


def decode_env(raw: bytes) -> dict[str, str]:
    out = {}
    for item in raw.split(b"\0"):
        if item:
            key, _, value = item.decode("utf-8", "surrogateescape").partition("=")
            out[key] = value
    return out


def http_get_unix(path: str, url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    """One GET over the agent's unix socket; (status, body)."""
    import socket  # only for GETs (doctor, policy CLI, tests): a launcher never pays for it
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        s.sendall(f"GET {url} HTTP/1.1\r\nHost: podnet\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, body
