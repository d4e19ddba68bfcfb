"""podnet-sriov without SR-IOV hardware, as sriov-cni's own tests do it: a fake sysfs tree (a PF with
two VFs: physfn, virtfnN, net/), veth ends standing in as the VF netdevs, and the PF's VF operations
recorded in a file (net/sriov.RecordingVfOps) instead of sent to a NIC — so what is checked of the
VF's settings is the recording, nothing more; the netdev's move, name, MAC and addresses are real.
In-process and through the agent."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.cni import nsexec, run_plugin

PF, PF_PCI = "enp175s0f1", "0000:af:00.1"
VFS = {"0000:af:06.0": "enp175s6", "0000:af:06.1": "enp175s7"}
DEFAULT = {"vlan": 0, "qos": 0, "proto": "802.1q", "mac": "00:00:00:00:00:00", "spoofchk": True, "trust": False,
           "min_tx_rate": 0, "max_tx_rate": 0, "link_state": "auto"}


@pytest.fixture
def hw(tmp_path: Path, sandbox: str) -> dict[str, str]:
    """The fake tree, the recording, and the VF netdevs (veth ends) in the sandbox."""
    devices = tmp_path / "sys" / "bus" / "pci" / "devices"
    (devices / PF_PCI / "net" / PF).mkdir(parents=True)
    for i, (pci, netdev) in enumerate(VFS.items()):
        (devices / pci / "net" / netdev).mkdir(parents=True)
        os.symlink(f"../{PF_PCI}", devices / pci / "physfn")
        os.symlink(f"../{pci}", devices / PF_PCI / f"virtfn{i}")
        nsexec(sandbox, "ip", "link", "add", netdev, "type", "veth", "peer", "name", f"peer{i}")
    rec = tmp_path / "vf-ops.json"
    rec.write_text(json.dumps({"vfs": {f"{PF}/{i}": DEFAULT for i in range(len(VFS))}, "calls": []}))
    return {"sysfs": str(tmp_path / "sys"), "recorder": str(rec), "data": str(tmp_path / "sriov")}


def conf(hw: dict[str, str], mode: dict[str, str], **extra: Any) -> dict[str, Any]:
    return {"cniVersion": "1.1.0", "name": "vfnet", "type": "podnet-sriov", "deviceID": "0000:af:06.0",
            "sysfsRoot": hw["sysfs"], "vfRecorder": hw["recorder"], "dataDir": hw["data"], **mode,
            "ipam": {"type": "podnet-static", "addresses": [{"address": "10.66.0.5/24"}]}, **extra}


def recorded(hw: dict[str, str]) -> dict[str, Any]:
    return dict(json.loads(Path(hw["recorder"]).read_text()))


SETTINGS = {"vlan": 100, "vlanQoS": 3, "mac": "02:66:00:00:00:05", "spoofchk": "off", "trust": "on",
            "min_tx_rate": 10, "max_tx_rate": 100, "link_state": "enable"}


def test_a_vf_into_the_pod_with_its_settings_and_everything_back_on_del(bin_dir: str, sandbox: str, make_pod, mode,
                                                                         hw: dict[str, str]) -> None:
    pod = make_pod()
    c = conf(hw, mode, **SETTINGS)
    r = run_plugin(f"{bin_dir}/podnet-sriov", "ADD", c, netns=pod, sandbox=sandbox, ifname="net1")
    assert r.rc == 0, r.stdout
    iface = next(i for i in r.out["interfaces"] if i["name"] == "net1")
    assert iface["mac"] == "02:66:00:00:00:05" and iface.get("pciID") == "0000:af:06.0", r.out
    shown = json.loads(nsexec(os.path.basename(pod), "ip", "-j", "-d", "addr", "show", "net1").stdout)[0]
    assert shown["address"] == "02:66:00:00:00:05" and shown["ifalias"] == "enp175s6"
    assert "10.66.0.5" in [a["local"] for a in shown["addr_info"]]
    assert "enp175s6" not in nsexec(sandbox, "ip", "link").stdout, "the VF netdev is still on the host"
    state = recorded(hw)
    assert state["vfs"][f"{PF}/0"] == {"vlan": 100, "qos": 3, "proto": "802.1q", "mac": "02:66:00:00:00:05",
                                       "spoofchk": False, "trust": True, "min_tx_rate": 10, "max_tx_rate": 100,
                                       "link_state": "enable"}
    assert state["vfs"][f"{PF}/1"] == DEFAULT, "the other VF was touched"
    other = make_pod()
    taken = run_plugin(f"{bin_dir}/podnet-sriov", "ADD", c, netns=other, sandbox=sandbox, ifname="net1",
                       container_id="c2")
    assert taken.rc == 1 and taken.out["code"] == 7 and "in use" in taken.out["msg"], taken.out
    d = run_plugin(f"{bin_dir}/podnet-sriov", "DEL", {**c, "prevResult": r.out}, netns=pod, sandbox=sandbox,
                   ifname="net1")
    assert d.rc == 0, d.stdout
    assert "enp175s6" in nsexec(sandbox, "ip", "link", "show", "enp175s6").stdout, "the VF netdev did not come back"
    assert recorded(hw)["vfs"][f"{PF}/0"] == DEFAULT, "the VF's settings were not restored"
    assert not list(Path(hw["data"]).rglob("*.json")) and not list(Path(hw["data"]).glob("pci/*"))
    assert run_plugin(f"{bin_dir}/podnet-sriov", "DEL", c, netns=pod, sandbox=sandbox, ifname="net1").rc == 0


def test_del_after_the_netns_is_gone_still_restores_the_vf(bin_dir: str, sandbox: str, make_pod, mode,
                                                           hw: dict[str, str]) -> None:
    pod = make_pod()
    c = conf(hw, mode, vlan=7, trust="on")
    assert run_plugin(f"{bin_dir}/podnet-sriov", "ADD", c, netns=pod, sandbox=sandbox, ifname="net1").rc == 0
    nsexec(sandbox, "ip", "netns", "del", os.path.basename(pod))
    d = run_plugin(f"{bin_dir}/podnet-sriov", "DEL", c, netns=pod, sandbox=sandbox, ifname="net1")
    assert d.rc == 0, d.stdout
    assert recorded(hw)["vfs"][f"{PF}/0"] == DEFAULT
    calls = recorded(hw)["calls"]
    assert calls == [f"set {PF} 0 vlan=7 trust=True", f"set {PF} 0 vlan=0 trust=False"], calls


@pytest.mark.parametrize("extra, field", [
    ({"vlanQoS": 3}, "vlanQoS"), ({"vlan": 5000}, "vlan"), ({"min_tx_rate": 50, "max_tx_rate": 10}, "min_tx_rate"),
    ({"spoofchk": "yes"}, "spoofchk"), ({"link_state": "up"}, "link_state"), ({"deviceID": "nope"}, "deviceID"),
    ({"deviceID": PF_PCI}, "deviceID"), ({"deviceID": "0000:af:09.0"}, "deviceID"), ({"vlanProto": "qinq"}, "vlanProto"),
])
def test_bad_config_is_code_7_naming_the_field_and_touches_nothing(bin_dir: str, sandbox: str, make_pod, mode,
                                                                   hw: dict[str, str], extra: dict[str, Any],
                                                                   field: str) -> None:
    pod = make_pod()
    r = run_plugin(f"{bin_dir}/podnet-sriov", "ADD", conf(hw, mode, **extra), netns=pod, sandbox=sandbox,
                   ifname="net1")
    assert r.rc == 1 and r.out["code"] == 7 and field in r.out["msg"], r.out
    assert recorded(hw)["calls"] == [] and "enp175s6" in nsexec(sandbox, "ip", "link").stdout
