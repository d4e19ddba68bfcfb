"""A node switches between the Go host-local and podnet-host-local without losing a lease."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import GO_PLUGINS, have_go_plugins
from tests.helpers.cni import run_plugin

pytestmark = pytest.mark.skipif(not have_go_plugins(), reason="containernetworking-plugins not installed")


def conf(tmp_path: Path, prefix: str) -> dict:  # type: ignore[type-arg]
    return {"cniVersion": "1.0.0", "name": "compat", "type": f"{prefix}host-local",
            "ipam": {"type": f"{prefix}host-local", "subnet": "10.66.0.0/24", "dataDir": str(tmp_path)}}


def ip_of(call) -> str:  # type: ignore[no-untyped-def]
    assert call.rc == 0, call.stdout
    return call.out["ips"][0]["address"]


def files(tmp_path: Path) -> set[str]:
    return {f.name for f in (tmp_path / "compat").iterdir() if f.name[0].isdigit()}


def test_go_then_podnet_then_go(bin_dir: str, tmp_path: Path):
    go, pn = f"{GO_PLUGINS}/host-local", f"{bin_dir}/podnet-host-local"
    a = ip_of(run_plugin(go, "ADD", conf(tmp_path, ""), container_id="go-a", netns="/x"))
    b = ip_of(run_plugin(go, "ADD", conf(tmp_path, ""), container_id="go-b", netns="/x"))
    # podnet sees the Go leases: new addresses continue round-robin, none is reused
    c = ip_of(run_plugin(pn, "ADD", conf(tmp_path, "podnet-"), container_id="pn-c", netns="/x"))
    assert len({a, b, c}) == 3 and c == "10.66.0.4/24"
    # podnet can CHECK and release a Go lease
    assert run_plugin(pn, "CHECK", dict(conf(tmp_path, "podnet-"), prevResult={}), container_id="go-a",
                      netns="/x").rc == 0
    assert run_plugin(pn, "DEL", conf(tmp_path, "podnet-"), container_id="go-a", netns="/x").rc == 0
    assert a.split("/")[0] not in files(tmp_path)
    # the Go plugin sees podnet's lease, skips it, and releases it on DEL
    d = ip_of(run_plugin(go, "ADD", conf(tmp_path, ""), container_id="go-d", netns="/x"))
    assert d not in (b, c)
    assert run_plugin(go, "DEL", conf(tmp_path, ""), container_id="pn-c", netns="/x").rc == 0
    assert files(tmp_path) == {b.split("/")[0], d.split("/")[0]}
    # and podnet still knows exactly who holds what after the Go plugin's changes
    assert run_plugin(pn, "DEL", conf(tmp_path, "podnet-"), container_id="go-b", netns="/x").rc == 0
    assert run_plugin(pn, "DEL", conf(tmp_path, "podnet-"), container_id="go-d", netns="/x").rc == 0
    assert files(tmp_path) == set()


def test_go_honours_podnet_duplicate_rule(bin_dir: str, tmp_path: Path):
    """A podnet lease blocks the Go plugin's ADD for the same (container, ifname), as its own would."""
    pn, go = f"{bin_dir}/podnet-host-local", f"{GO_PLUGINS}/host-local"
    ip_of(run_plugin(pn, "ADD", conf(tmp_path, "podnet-"), container_id="dup", netns="/x"))
    again = run_plugin(go, "ADD", conf(tmp_path, ""), container_id="dup", netns="/x")
    assert again.rc != 0 and "duplicate" in again.out["msg"]
