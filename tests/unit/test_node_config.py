"""The agent's settings: one NodeConfig from a config file (YAML or JSON, the ConfigMap) and flags,
flags winning; every bad setting refused with its name."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from podnet.agent.config import ConfigError, NodeConfig
from podnet.cli import parser
from podnet.cli.agent import agent_config


def test_defaults_match_the_documented_ones() -> None:
    c = NodeConfig.load()
    assert (c.socket, c.datastore, c.lease_ttl, c.block_size, c.route_interval) == \
        ("/run/podnet/agent.sock", "etcd", 30, 26, 10.0)


def test_a_yaml_file_sets_everything_and_flags_given_on_the_command_line_win(tmp_path: Path) -> None:
    f = tmp_path / "agent.yaml"
    f.write_text("routing: vxlan\ncluster-cidr: 10.244.0.0/16,fd00:244::/56\netcd:\n  - http://10.0.0.9:2379\n"
                 "lease_ttl: 5\nvxlan-port: 4789\nnetwork: from-file\n")
    a = parser().parse_args(["agent", "--config", str(f), "--network", "from-flag", "--node", "n7"])
    c = agent_config(a)
    assert c.routing == "vxlan" and c.cluster_cidr == ["10.244.0.0/16", "fd00:244::/56"]
    assert c.etcd == ["http://10.0.0.9:2379"] and c.lease_ttl == 5 and c.vxlan_port == 4789
    assert c.network == "from-flag" and c.node == "n7", "a flag given must win over the file"
    assert c.socket == "/run/podnet/agent.sock", "a setting in neither keeps its default"


def test_a_json_file_is_read_too(tmp_path: Path) -> None:
    f = tmp_path / "agent.json"
    f.write_text(json.dumps({"routing": "host-gw", "reclaim-after": 0, "cluster-cidr": ["10.1.0.0/16"]}))
    c = NodeConfig.load(str(f))
    assert c.routing == "host-gw" and c.reclaim_after == 0.0 and c.cluster_cidr == ["10.1.0.0/16"]


def test_flags_alone_still_work_and_comma_lists_split() -> None:
    c = agent_config(parser().parse_args(["agent", "--etcd", "http://a:1,http://b:2", "--etcd", "http://c:3",
                                          "--cluster-cidr", "10.2.0.0/16", "--routing", "host-gw"]))
    assert c.etcd == ["http://a:1", "http://b:2", "http://c:3"] and c.routing == "host-gw"


@pytest.mark.parametrize("content, named", [
    ("routing: bgpx\n", "routing"),
    ("datastore: consul\n", "datastore"),
    ("lease-ttl: soon\n", "lease-ttl"),
    ("lease-ttl: 2.5\n", "lease-ttl"),
    ("cluster-cidr: 10.0.0.1/33\n", "cluster-cidr"),
    ("etcd: 5\n", "etcd"),
    ("no-such-setting: 1\n", "no-such-setting"),
    ("ipam-mode: flannel\n", "ipam-mode"),
    ("cni-conf-dir: /etc/cni/net.d\n", "cni-conf-dir"),
    ("routing: host-gw\nencryption: ipsec\n", "encryption"),
    ("encryption: wireguard\n", "encryption needs routing"),
    ("routing: vxlan\nencryption: wireguard\nwireguard-port: 70000\n", "wireguard-port"),
    ("log-level: chatty\n", "log-level"),
    ("- a list\n", "mapping"),
    ("{unclosed\n", "YAML"),
])
def test_a_bad_setting_is_refused_naming_it(tmp_path: Path, content: str, named: str) -> None:
    f = tmp_path / "agent.yaml"
    f.write_text(content)
    with pytest.raises(ConfigError, match=named):
        NodeConfig.load(str(f))


def test_log_level_in_any_case() -> None:
    """`--log-level debug` as users type it (it crashed the agent with logging's ValueError)."""
    for given in ("debug", "Debug", "DEBUG"):
        assert NodeConfig.load("", {"log-level": given}).log_level == "DEBUG"


def test_a_missing_config_file_is_an_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.yaml"):
        NodeConfig.load(str(tmp_path / "nope.yaml"))


def test_the_agent_command_exits_2_with_the_reason(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from podnet.cli import main
    f = tmp_path / "agent.yaml"
    f.write_text("routing: bgpx\n")
    assert main(["agent", "--config", str(f)]) == 2
    assert "routing" in capsys.readouterr().err


UNDERLAY = {"pod-network": "underlay", "underlay-subnet": "10.0.0.0/24", "underlay-gateway": "10.0.0.254",
            "cluster-cidr": "10.0.0.128/26", "service-cidr": "10.96.0.0/12"}


@pytest.mark.parametrize("change, field", [
    ({"underlay-subnet": ""}, "underlay-subnet"),
    ({"underlay-gateway": "10.0.1.1"}, "underlay-gateway"),
    ({"cluster-cidr": "10.0.1.0/26"}, "cluster-cidr"),
    ({"cluster-cidr": "10.0.0.128/25"}, "cluster-cidr"),      # the pool would hold the gateway .254
    ({"routing": "vxlan"}, "routing"),
    ({"datastore": "kubernetes"}, "datastore"),
    ({"underlay-link": "vlan"}, "underlay-link"),
])
def test_underlay_settings_that_cannot_work_are_refused_by_name(change: dict[str, str], field: str) -> None:
    NodeConfig.load(overrides=UNDERLAY)                       # the base is valid
    with pytest.raises(ConfigError, match=f"^{field}:"):
        NodeConfig.load(overrides={**UNDERLAY, **change})
