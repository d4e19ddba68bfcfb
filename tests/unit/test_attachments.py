"""Attachments (dispatch/attachments.py) with a fake API and the plugins' calls recorded: order,
capabilities, records, status, undo, DEL from the record alone, a missing NAD, no agent."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from podnet.cni.errors import CNIError
from podnet.cni.request import from_env
from podnet.cni.types import Interface, IPConfig, Result
from podnet.dispatch import attachments, netselect

CID = "c0ffee" * 8


class FakeApi:
    def __init__(self, networks: str, nads: dict[str, dict[str, Any]]) -> None:
        self.annotations = {netselect.NETWORKS: networks}
        self.nads, self.status, self.events = nads, None, []

    def pod_annotations(self, namespace: str, name: str) -> dict[str, str]:
        return self.annotations

    def nad(self, namespace: str, name: str) -> dict[str, Any] | None:
        conf = self.nads.get(f"{namespace}/{name}")
        return {"spec": {"config": json.dumps(conf)}} if conf is not None else None

    def set_status(self, namespace: str, name: str, status: list[dict[str, Any]]) -> None:
        self.status = status

    def event(self, namespace: str, name: str, reason: str, message: str) -> None:
        self.events.append((reason, message))


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[tuple[str, str, str, dict[str, Any]]]:
    """(command, ifname, type, config) of every plugin call; a plugin of type 'fail' fails."""
    seen: list[tuple[str, str, str, dict[str, Any]]] = []
    monkeypatch.setenv("PODNET_ATTACHMENTS_DIR", str(tmp_path))

    def call(plugin: dict[str, Any], env: dict[str, str], req: Any) -> dict[str, Any] | None:
        seen.append((env["CNI_COMMAND"], env["CNI_IFNAME"], plugin["type"], plugin))
        if plugin["type"] == "fail":
            raise CNIError(11, "the test fails this one")
        if env["CNI_COMMAND"] != "ADD":
            return None
        n = sum(1 for c in seen if c[0] == "ADD")
        return {"cniVersion": "1.0.0", "interfaces": [{"name": env["CNI_IFNAME"], "mac": f"02:00:00:00:00:0{n}",
                                                       "sandbox": env["CNI_NETNS"]}],
                "ips": [{"address": f"10.50.0.{n}/24", "interface": 0}]}
    monkeypatch.setattr(attachments, "_call", call)
    yield seen
    attachments.install(None)


def request(command: str = "ADD") -> Any:
    env = {"CNI_COMMAND": command, "CNI_CONTAINERID": CID, "CNI_NETNS": "/run/netns/p", "CNI_IFNAME": "eth0",
           "CNI_ARGS": "K8S_POD_NAMESPACE=team;K8S_POD_NAME=web", "CNI_PATH": "/opt/cni/bin"}
    conf = {"cniVersion": "1.0.0", "name": "podnet", "type": "podnet", "attachments": {}}
    return from_env(env, json.dumps(conf).encode())


PRIMARY = Result("1.0.0", (Interface("eth0", "02:aa:aa:aa:aa:aa", sandbox="/run/netns/p"),),
                 (IPConfig(__import__("ipaddress").ip_interface("10.244.0.5/24"), None, 0),))
MACVLAN = {"cniVersion": "1.0.0", "name": "mv", "type": "macvlan", "capabilities": {"ips": True, "mac": True}}
CHAIN = {"cniVersion": "1.0.0", "name": "ch", "plugins": [{"type": "bridge"}, {"type": "tuning"}]}


def test_attachments_run_in_order_with_capabilities_and_are_recorded(calls: list[Any]) -> None:
    api = FakeApi('[{"name": "mv", "ips": ["10.60.0.7/24"], "mac": "02:00:00:00:00:77"}, {"name": "ch", '
                  '"interface": "data1"}]', {"team/mv": MACVLAN, "team/ch": CHAIN})
    attachments.install(api)
    undone: list[bool] = []
    attachments.add_attachments(request(), PRIMARY, lambda: undone.append(True))
    assert [(c[0], c[1], c[2]) for c in calls] == [("ADD", "net1", "macvlan"), ("ADD", "data1", "bridge"),
                                                   ("ADD", "data1", "tuning")]
    assert calls[0][3]["runtimeConfig"] == {"ips": ["10.60.0.7/24"], "mac": "02:00:00:00:00:77"}
    assert "runtimeConfig" not in calls[1][3] and calls[2][3]["prevResult"]["interfaces"][0]["name"] == "data1"
    assert not undone
    assert api.status == [
        {"name": "podnet", "interface": "eth0", "ips": ["10.244.0.5"], "mac": "02:aa:aa:aa:aa:aa", "default": True},
        {"name": "team/mv", "interface": "net1", "ips": ["10.50.0.1"], "mac": "02:00:00:00:00:01"},
        {"name": "team/ch", "interface": "data1", "ips": ["10.50.0.3"], "mac": "02:00:00:00:00:03"}]
    calls.clear()
    attachments.install(None)                                 # DEL needs no API: the record says it all
    attachments.delete_attachments(request("DEL"))
    assert [(c[0], c[1], c[2]) for c in calls] == [("DEL", "data1", "tuning"), ("DEL", "data1", "bridge"),
                                                   ("DEL", "net1", "macvlan")]
    assert calls[0][3]["prevResult"]["interfaces"][0]["name"] == "data1"
    calls.clear()
    attachments.delete_attachments(request("DEL"))            # idempotent: the record is gone
    assert calls == []


def test_one_failing_attachment_undoes_the_others_and_the_primary(calls: list[Any]) -> None:
    api = FakeApi("mv, broken", {"team/mv": MACVLAN, "team/broken": {"cniVersion": "1.0.0", "type": "fail"}})
    attachments.install(api)
    undone: list[bool] = []
    with pytest.raises(CNIError) as e:
        attachments.add_attachments(request(), PRIMARY, lambda: undone.append(True))
    assert e.value.code == 11 and "attachment team/broken (net2)" in e.value.msg, e.value.msg
    assert [(c[0], c[1]) for c in calls] == [("ADD", "net1"), ("ADD", "net2"), ("DEL", "net1")]
    assert undone == [True] and api.status is None
    calls.clear()
    attachments.delete_attachments(request("DEL"))
    assert calls == [], "a failed ADD left a record"


def test_a_missing_nad_is_code_11_with_an_event_and_nothing_made(calls: list[Any]) -> None:
    api = FakeApi("mv, nowhere", {"team/mv": MACVLAN})
    attachments.install(api)
    undone: list[bool] = []
    with pytest.raises(CNIError) as e:
        attachments.add_attachments(request(), PRIMARY, lambda: undone.append(True))
    assert e.value.code == 11 and "team/nowhere" in e.value.msg
    assert api.events and api.events[-1][0] == "NetworkNotFound" and "team/nowhere" in api.events[-1][1]
    assert [(c[0], c[1]) for c in calls] == [("ADD", "net1"), ("DEL", "net1")] and undone == [True]


def test_without_an_agent_a_pods_add_is_try_again(calls: list[Any]) -> None:
    undone: list[bool] = []
    with pytest.raises(CNIError) as e:
        attachments.add_attachments(request(), PRIMARY, lambda: undone.append(True))
    assert e.value.code == 11 and "agent" in e.value.msg and undone == [True] and calls == []


def test_a_bad_annotation_is_a_config_error_with_an_event(calls: list[Any]) -> None:
    api = FakeApi("Not_A_Name", {})
    attachments.install(api)
    with pytest.raises(CNIError) as e:
        attachments.add_attachments(request(), PRIMARY, lambda: None)
    assert e.value.code == 7 and api.events[0][0] == "InvalidNetworks"
