"""The CNI contract at the skel: env gating, codes, versions, rendering (no root, no kernel)."""
from __future__ import annotations

import ipaddress
import json

import pytest

from podnet.cni.errors import CNIError
from podnet.cni.skel import Plugin, run
from podnet.cni.types import IPConfig, Result
from podnet.cni.version import SUPPORTED

ADD_ENV = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "abc", "CNI_NETNS": "/run/netns/x", "CNI_IFNAME": "eth0",
           "CNI_PATH": "/opt/cni/bin"}


def fake_plugin(calls: list[str]) -> Plugin:
    def add(req):  # type: ignore[no-untyped-def]
        calls.append("ADD")
        return Result(req.cni_version, ips=(IPConfig(ipaddress.ip_interface("10.0.0.2/24"),
                                                     ipaddress.ip_address("10.0.0.1")),))

    def other(req):  # type: ignore[no-untyped-def]
        calls.append(req.command)

    return Plugin("fake", add, other, other, other, other)


def conf(version: str = "1.0.0", **kw) -> bytes:  # type: ignore[no-untyped-def]
    return json.dumps({"cniVersion": version, "name": "n1", "type": "fake", **kw}).encode()


def err(out) -> dict:  # type: ignore[no-untyped-def]
    assert out.exit_code != 0
    return json.loads(out.stdout)


def test_no_command_prints_version_to_stderr_and_exits_zero():
    out = run(fake_plugin([]), {}, b"")
    assert out.exit_code == 0 and out.stdout == b"" and "CNI protocol versions supported" in out.stderr


def test_version_lists_all_versions_and_echoes_input():
    out = run(fake_plugin([]), {"CNI_COMMAND": "VERSION"}, b'{"cniVersion":"0.4.0"}')
    body = json.loads(out.stdout)
    assert out.exit_code == 0 and body["cniVersion"] == "0.4.0"
    assert set(body["supportedVersions"]) >= set(SUPPORTED)
    assert json.loads(run(fake_plugin([]), {"CNI_COMMAND": "VERSION"}, b"").stdout)["cniVersion"] == "1.1.0"


def test_unknown_command_is_code_4():
    e = err(run(fake_plugin([]), {**ADD_ENV, "CNI_COMMAND": "FROB"}, conf()))
    assert e["code"] == 4 and "FROB" in e["msg"]


def test_missing_env_names_every_variable():
    e = err(run(fake_plugin([]), {"CNI_COMMAND": "ADD"}, conf()))
    assert e["code"] == 4
    for var in ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"):
        assert var in e["msg"]


def test_empty_container_id_is_code_3():
    assert err(run(fake_plugin([]), {**ADD_ENV, "CNI_CONTAINERID": ""}, conf()))["code"] == 3


@pytest.mark.parametrize("ifname", ["a" * 16, "eth/0", "eth:0", "eth 0", ".", ".."])
def test_bad_ifname_is_code_4(ifname: str):
    assert err(run(fake_plugin([]), {**ADD_ENV, "CNI_IFNAME": ifname}, conf()))["code"] == 4


def test_bad_json_is_code_6_and_missing_name_is_code_7():
    assert err(run(fake_plugin([]), ADD_ENV, b"{not json"))["code"] == 6
    assert err(run(fake_plugin([]), ADD_ENV, b'{"cniVersion":"1.0.0"}'))["code"] == 7
    e = err(run(fake_plugin([]), ADD_ENV, conf(name="../x")))
    assert e["code"] == 7 and "name" in e["msg"]


def test_unsupported_version_is_code_1_listing_supported():
    e = err(run(fake_plugin([]), ADD_ENV, conf("9.9.9")))
    assert e["code"] == 1 and "1.1.0" in e["details"]


@pytest.mark.parametrize("command,version", [("CHECK", "0.3.1"), ("STATUS", "1.0.0"), ("GC", "1.0.0")])
def test_commands_gated_by_config_version(command: str, version: str):
    calls: list[str] = []
    assert err(run(fake_plugin(calls), {**ADD_ENV, "CNI_COMMAND": command}, conf(version)))["code"] == 1
    assert calls == []


def test_del_needs_no_netns_and_status_gc_need_no_container():
    calls: list[str] = []
    p = fake_plugin(calls)
    assert run(p, {"CNI_COMMAND": "DEL", "CNI_CONTAINERID": "abc", "CNI_IFNAME": "eth0"}, conf()).exit_code == 0
    assert run(p, {"CNI_COMMAND": "STATUS"}, conf("1.1.0")).exit_code == 0
    assert run(p, {"CNI_COMMAND": "GC", "CNI_PATH": "/x"}, conf("1.1.0")).exit_code == 0
    assert calls == ["DEL", "STATUS", "GC"]


@pytest.mark.parametrize("version", SUPPORTED)
def test_result_rendered_in_config_version(version: str):
    out = run(fake_plugin([]), ADD_ENV, conf(version))
    body = json.loads(out.stdout)
    assert out.exit_code == 0 and body["cniVersion"] == version
    if version in ("0.1.0", "0.2.0"):
        assert body["ip4"] == {"ip": "10.0.0.2/24", "gateway": "10.0.0.1"}
    else:
        assert body["ips"][0]["address"] == "10.0.0.2/24"
        assert ("version" in body["ips"][0]) == version.startswith("0.")


def test_plugin_errors_keep_their_code_and_unknown_errors_are_999():
    def boom(req):  # type: ignore[no-untyped-def]
        raise CNIError(7, "invalid config: foo: bad")

    def crash(req):  # type: ignore[no-untyped-def]
        raise RuntimeError("kaboom")

    assert err(run(Plugin("x", boom, boom), ADD_ENV, conf()))["code"] == 7
    e = err(run(Plugin("x", crash, crash), ADD_ENV, conf()))
    assert e["code"] == 999 and "kaboom" in e["msg"]
    assert e["cniVersion"] == "1.0.0"


def test_cni_args_must_be_pairs():
    assert err(run(fake_plugin([]), {**ADD_ENV, "CNI_ARGS": "IgnoreUnknown=1;junk"}, conf()))["code"] == 4


def test_own_netns_is_refused_with_code_8():
    assert err(run(fake_plugin([]), {**ADD_ENV, "CNI_NETNS": "/proc/self/ns/net"}, conf()))["code"] == 8
