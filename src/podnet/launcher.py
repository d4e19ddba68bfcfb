"""The per-call entry point every `podnet-<type>` executable runs.

Standard library only, and only its cheapest parts (no json, re or http.client: each
costs milliseconds at every pod start).  If the agent's unix socket answers, the
request goes there as one raw HTTP/1.1 POST — the CNI variables as headers, stdin as
the body; otherwise the same handler runs in this process.  DEL never depends on the
agent: if the agent fails mid-request, DEL runs in-process (same lock files, same state).
"""
import _socket  # the C module: `socket` pulls in enum/selectors, ~8 ms per pod start
import posix  # built in: `os` costs ~1.5 ms per pod start (collections.abc, posixpath)
import sys

from .wire import (
    DEFAULT_SOCKET,
    ENV_LENGTH_HEADER,
    EXIT_HEADER,
    LATEST_VERSION,
    MAX_STDIN,
    STDERR_HEADER,
    SUPPORTED_VERSIONS,
    encode_env,
)

TIMEOUT_ENV = "PODNET_AGENT_TIMEOUT"
NO_AGENT_ENV = "PODNET_NO_AGENT"
CALL_LOG_ENV = "PODNET_CALL_LOG"
_EXIT = EXIT_HEADER.lower().encode() + b": "
_STDERR_LEN = STDERR_HEADER.lower().encode() + b": "


class AgentUnreachable(Exception):
    """Could not connect (or was refused): nothing ran, so running in-process is safe."""


class AgentFailed(Exception):
    """Connected, but no complete answer: the request may have run partly."""


def string_field(stdin: bytes, key: str) -> str:
    """A top-level-looking plain string value ("key": "value") without a JSON parser; '' if absent.

    Only for hints (socket path, version echo): the plugin itself parses the config properly.
    """
    pos = stdin.find(b'"%s"' % key.encode())
    if pos < 0:
        return ""
    rest = stdin[pos + len(key) + 2:].lstrip()
    if not rest.startswith(b":"):
        return ""
    rest = rest[1:].lstrip()
    end = rest.find(b'"', 1)
    if not rest.startswith(b'"') or end < 0 or b"\\" in rest[:end]:
        return ""
    return rest[1:end].decode(errors="replace")


def socket_path(stdin: bytes) -> str:
    """`agentSocket` from the network config, else the default."""
    return string_field(stdin, "agentSocket") or DEFAULT_SOCKET


def version_answer(stdin: bytes) -> bytes:
    """VERSION: echo the input's cniVersion when supported (the spec), else the newest."""
    asked = string_field(stdin, "cniVersion")
    ver = asked if asked in SUPPORTED_VERSIONS else LATEST_VERSION
    return ('{"cniVersion": "%s", "supportedVersions": [%s]}\n'
            % (ver, ", ".join('"%s"' % v for v in SUPPORTED_VERSIONS))).encode()


def encode_request(plugin_type: str, env: dict[str, str], stdin: bytes) -> bytes:
    """One POST: the variables (wire.encode_env) then stdin, both in the body, byte for byte."""
    envb = encode_env(env)
    head = (f"POST /cni/{plugin_type} HTTP/1.1\r\nHost: podnet\r\nContent-Length: {len(envb) + len(stdin)}\r\n"
            f"{ENV_LENGTH_HEADER}: {len(envb)}\r\nConnection: close\r\n\r\n")
    return head.encode("utf-8", "surrogateescape") + envb + stdin


def decode_response(raw: bytes) -> tuple[int, bytes, str]:
    """(exit code, stdout bytes, stderr text): the body is stdout then stderr."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep or not head.startswith(b"HTTP/1.1 "):
        raise AgentFailed("malformed answer from the agent")
    if head.startswith(b"HTTP/1.1 403"):
        raise AgentUnreachable("the agent serves another network namespace")
    code = err_len = None
    for line in head.lower().split(b"\r\n")[1:]:
        if line.startswith(_EXIT):
            code = int(line[len(_EXIT):])
        elif line.startswith(_STDERR_LEN):
            err_len = int(line[len(_STDERR_LEN):])
    if code is None or err_len is None or err_len > len(body):
        raise AgentFailed("incomplete answer from the agent")
    cut = len(body) - err_len
    return code, body[:cut], body[cut:].decode(errors="replace")


def call_agent(path: str, request: bytes, timeout: float) -> tuple[int, bytes, str]:
    s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        s.settimeout(timeout)
        try:
            s.connect(path)
        except OSError as e:
            raise AgentUnreachable(str(e)) from None
        try:
            s.sendall(request)
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
        except OSError as e:  # a timeout included
            raise AgentFailed(str(e)) from None
    finally:
        s.close()
    return decode_response(b"".join(chunks))


def process_env() -> dict[str, str]:
    """The environment as str, decoded as os.environ would (without importing os)."""
    return {k.decode("utf-8", "surrogateescape"): v.decode("utf-8", "surrogateescape")
            for k, v in posix.environ.items()}


def cni_env(environ: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in environ.items() if k.startswith("CNI_")}


def run_in_process(plugin_type: str, env: dict[str, str], stdin: bytes) -> tuple[int, bytes, str]:
    import logging
    import os
    logging.basicConfig(level=os.environ.get("PODNET_LOG_LEVEL", "WARNING"), stream=sys.stderr,
                        format="podnet %(levelname)s %(name)s: %(message)s")
    from .dispatch import handle
    out = handle(plugin_type, env, stdin)
    return out.exit_code, out.stdout, out.stderr


def _try_again(why: str, stdin: bytes) -> tuple[int, bytes, str]:
    """Code 11 in the request's cniVersion (as every error podnet prints)."""
    asked = string_field(stdin, "cniVersion")
    body = ('{"cniVersion": "%s", "code": 11, "msg": "podnet agent did not finish the request", '
            '"details": "%s"}\n' % (asked if asked in SUPPORTED_VERSIONS else LATEST_VERSION,
                                     why.replace("\\", "/").replace('"', "'")))
    return 1, body.encode(), why + "\n"


def execute(plugin_type: str, environ: dict[str, str], stdin: bytes) -> tuple[int, bytes, str]:
    env = cni_env(environ)
    command = env.get("CNI_COMMAND")
    if command == "VERSION":
        return 0, version_answer(stdin), ""
    if command is None:
        from .cni.skel import about
        return 0, b"", about(plugin_type)
    if environ.get(NO_AGENT_ENV) or len(stdin) > MAX_STDIN:
        return run_in_process(plugin_type, env, stdin)       # (an oversized config is refused there)
    try:
        request = encode_request(plugin_type, env, stdin)
        return call_agent(socket_path(stdin), request, float(environ.get(TIMEOUT_ENV, "60")))
    except AgentUnreachable:
        return run_in_process(plugin_type, env, stdin)
    except AgentFailed as e:
        if command in ("DEL", "GC", "STATUS", "CHECK"):
            return run_in_process(plugin_type, env, stdin)
        return _try_again(str(e), stdin)


def log_call(path: str, plugin_type: str, environ: dict[str, str], code: int, out: bytes = b"") -> None:
    """One line per call (PODNET_CALL_LOG): what a runtime asked of which plugin, the exit status
    and, for a failure, the CNI error code it answered — how the lab records kubelet's real call
    sequence.  One write of one line, appended."""
    fields = " ".join("%s=%s" % (k[4:].lower(), environ.get(k, "")) for k in
                      ("CNI_COMMAND", "CNI_IFNAME", "CNI_NETNS", "CNI_CONTAINERID"))
    import time
    cni_code = ""
    if code:
        import json
        try:
            cni_code = " code=%s" % json.loads(out).get("code")
        except (ValueError, AttributeError):
            cni_code = " code=?"
    line = ("%.3f type=%s %s rc=%d%s\n" % (time.time(), plugin_type, fields, code, cni_code)).encode()
    try:
        fd = posix.open(path, posix.O_WRONLY | posix.O_APPEND | posix.O_CREAT, 0o644)
        posix.write(fd, line)
        posix.close(fd)
    except OSError:
        pass


def main(plugin_type: str) -> int:
    environ = process_env()
    # never more than the limit + 1 byte: a larger config is refused, not held in memory
    stdin = b"" if environ.get("CNI_COMMAND") is None else sys.stdin.buffer.read(MAX_STDIN + 1)
    code, out, err = execute(plugin_type, environ, stdin)
    if environ.get(CALL_LOG_ENV):
        log_call(environ[CALL_LOG_ENV], plugin_type, environ, code, out)
    if err:
        sys.stderr.write(err)
    sys.stdout.buffer.write(out)
    sys.stdout.flush()
    return code
