"""The launcher's request framing and the agent's error table (no root, no kernel)."""
from __future__ import annotations

import errno
import json

import pytest

from podnet import launcher, wire
from podnet.cni.errors import CNIError
from podnet.dispatch.codes import to_cni_error
from podnet.ipam.errors import RangeExhausted, StoreUnavailable
from podnet.net.errors import NetError, NetnsGone


def test_request_is_one_http_post_with_the_exact_env_then_the_exact_stdin_in_its_body():
    stdin = b'{"cniVersion":"1.0.0","name":"n","x":"\xc3\xa9"}'
    env = {"CNI_COMMAND": " ADD", "CNI_ARGS": "A=1;B=2", "CNI_IFNAME": "a\r\nInjected: 1", "CNI_PATH": "x" * 70000}
    raw = launcher.encode_request("bridge", env, stdin)
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"POST /cni/bridge HTTP/1.1\r\n") and b"Injected" not in head
    fields = dict(line.split(": ", 1) for line in head.decode().split("\r\n")[1:])
    assert int(fields["Content-Length"]) == len(body)
    env_len = int(fields["X-Cni-Env-Length"])
    assert wire.decode_env(body[:env_len]) == env, "whitespace, line breaks and 70 KB values travel unchanged"
    assert body[env_len:] == stdin


def test_response_decoding_and_refusal():
    raw = b"HTTP/1.1 200 OK\r\nX-CNI-Exit: 1\r\nX-CNI-Stderr-Length: 3\r\n\r\n" + b'{"code":7}\nbad'
    assert launcher.decode_response(raw) == (1, b'{"code":7}\n', "bad")
    with pytest.raises(launcher.AgentUnreachable):
        launcher.decode_response(b"HTTP/1.1 403 Forbidden\r\n\r\n{}")
    with pytest.raises(launcher.AgentFailed):
        launcher.decode_response(b"HTTP/1.1 200 OK\r\nX-CNI-Exit: 0\r\n\r\n")
    with pytest.raises(launcher.AgentFailed):
        launcher.decode_response(b"")


def test_version_echo_without_a_json_parser():
    assert b'"cniVersion": "0.4.0"' in launcher.version_answer(b'{"cniVersion" : "0.4.0"}')
    assert b'"cniVersion": "1.1.0"' in launcher.version_answer(b"")


def test_socket_path_from_config_or_default():
    assert launcher.socket_path(b'{"name":"n"}') == launcher.DEFAULT_SOCKET
    assert launcher.socket_path(b'{"agentSocket":"/run/x.sock"}') == "/run/x.sock"
    assert launcher.socket_path(b'{"agentSocket": 5}') == launcher.DEFAULT_SOCKET
    assert launcher.socket_path(b'{"agentSocket" : "/a/b.sock", "x": 1}') == "/a/b.sock"


def test_only_cni_variables_are_forwarded():
    assert launcher.cni_env({"CNI_COMMAND": "ADD", "PYTHONPATH": "/evil", "PATH": "/bin"}) == {"CNI_COMMAND": "ADD"}


def test_unreachable_agent_runs_version_without_it(tmp_path):
    code, out, _ = launcher.execute("bridge", {"CNI_COMMAND": "VERSION"}, b"{}")
    assert code == 0 and "supportedVersions" in json.loads(out)


@pytest.mark.parametrize("exc,code,expected", [
    (NetnsGone("/run/netns/x"), 4, True), (RangeExhausted("10.0.0.1-10.0.0.6"), 11, True),
    (StoreUnavailable("ro"), 11, True), (NetError("boom"), 999, True), (CNIError(7, "x"), 7, True),
    (OSError(errno.ENAMETOOLONG, "File name too long", "/var/lib/x" + "a" * 300), 999, True),
    (ValueError("odd"), 999, False), (KeyError("k"), 999, False),
    (FileNotFoundError(errno.ENOENT, "No such file or directory", "/x"), 999, False),
])
def test_error_table(exc, code, expected):
    """Typed errors and the node's file-system refusals are expected (a log line); anything else is
    a bug (its traceback is logged)."""
    err, was_expected = to_cni_error(exc)
    assert (err.code, was_expected) == (code, expected)
