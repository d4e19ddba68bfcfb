"""deploy/podnet.yaml: what `kubectl apply` gets.  Validated offline against the Kubernetes
schemas of two minor versions, kept in sync with its renderer, and checked for what a cluster
admin relies on: every node, host mounts, privileges, probes, least-rights RBAC, and agent
arguments the real CLI accepts."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from podnet.agent.config import NodeConfig
from podnet.cli import parser
from podnet.cli.agent import agent_config
from podnet.manifests import DeployConfig, render, to_yaml

ROOT = Path(__file__).resolve().parents[2]
K8S_VERSIONS = ["1.33.0", "1.37.0"]
VARIANTS = {
    "default": DeployConfig(),
    "etcd-tls-dualstack": DeployConfig(cluster_cidr_v6="fd00:244::/56", backend="host-gw", datastore="etcd",
                                       etcd_endpoints="https://10.0.0.9:2379,https://10.0.0.10:2379",
                                       etcd_tls_secret="podnet-etcd-tls"),
    "wireguard": DeployConfig(encryption="wireguard"),
    "bgp": DeployConfig(backend="bgp", bgp_peers="10.0.0.254/64600", no_nat=True, encryption="wireguard"),
    "relay": DeployConfig(relay_replicas=3, relay_cluster_ip="10.96.0.20"),
}


def test_the_committed_manifest_is_the_rendered_default() -> None:
    assert (ROOT / "deploy/podnet.yaml").read_text() == to_yaml(render(DeployConfig())), \
        "deploy/podnet.yaml is stale: run `podnet manifests > deploy/podnet.yaml`"


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_object_validates_against_the_kubernetes_schema(version: str, variant: str) -> None:
    import kubernetes_validate
    for doc in yaml.safe_load_all(to_yaml(render(VARIANTS[variant]))):
        kubernetes_validate.validate(doc, version, strict=True)


def kind(docs: list[dict[str, Any]], k: str) -> dict[str, Any]:
    return next(d for d in docs if d["kind"] == k)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_daemonset_mounts_privileges_probes_and_args(variant: str, tmp_path: Path) -> None:
    conf = VARIANTS[variant]
    docs = render(conf)
    pod = kind(docs, "DaemonSet")["spec"]["template"]["spec"]
    assert pod["hostNetwork"] and pod["priorityClassName"] == "system-node-critical"
    assert pod["tolerations"] == [{"operator": "Exists"}]
    host = {v["name"]: v["hostPath"]["path"] for v in pod["volumes"] if "hostPath" in v}
    agent, install = pod["containers"][0], pod["initContainers"][0]
    agent_mounts = {m["mountPath"]: host.get(m["name"]) for m in agent["volumeMounts"]}
    assert agent_mounts["/host/etc/cni/net.d"] == "/etc/cni/net.d"
    assert agent_mounts["/run/podnet"] == "/run/podnet" and agent_mounts["/var/lib/cni"] == "/var/lib/cni"
    assert agent_mounts["/run/netns"] == "/run/netns"
    assert next(m for m in agent["volumeMounts"] if m["mountPath"] == "/run/netns")["mountPropagation"] == \
        "HostToContainer", "pod netns created after the agent started would be invisible to it"
    install_mounts = {m["mountPath"]: host.get(m["name"]) for m in install["volumeMounts"]}
    assert install_mounts["/host/opt/cni/bin"] == "/opt/cni/bin" and install_mounts["/host/opt/podnet"] == "/opt/podnet"
    assert "NET_ADMIN" in agent["securityContext"]["capabilities"]["add"]
    assert agent["livenessProbe"]["exec"]["command"][:2] == ["podnet", "health"]
    assert "--ready" in agent["readinessProbe"]["exec"]["command"]
    rules = kind(docs, "ClusterRole")["rules"]
    assert {"get", "list", "watch", "patch"} == set(next(r for r in rules if r["resources"] == ["nodes"])["verbs"])
    assert not any("*" in r["verbs"] or "secrets" in r["resources"] for r in rules), "more rights than needed"

    # the agent's and the installer's arguments, with the ConfigMap (the agent's config file, mounted
    # where --config points) and the downward API filled in, parse into the settings meant
    env = {"NODE_IP": "10.0.0.1", "NODE_NAME": "node-a"}
    config_mount = next(m for m in agent["volumeMounts"] if m["name"] == "config")
    assert next(v for v in pod["volumes"] if v["name"] == "config")["configMap"]["name"] == "podnet-config"
    for c in (agent, install):
        argv = [re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], x) for x in c["args"]]
        parsed = parser().parse_args(argv)
        if c is agent:
            assert parsed.config.startswith(config_mount["mountPath"] + "/")
            settings = tmp_path / variant / "agent.yaml"
            settings.parent.mkdir()
            settings.write_text(kind(docs, "ConfigMap")["data"][parsed.config.rsplit("/", 1)[1]])
            parsed.config = str(settings)
            cfg = agent_config(parsed)
            assert cfg.datastore == conf.datastore and cfg.routing == conf.backend
            assert cfg.cni_conf_dir == "/host/etc/cni/net.d" and cfg.node == "node-a" and cfg.underlay_addr == "10.0.0.1"
            assert cfg.cluster_cidr == [x for x in (conf.cluster_cidr, conf.cluster_cidr_v6) if x]
            if conf.etcd_tls_secret:
                assert cfg.etcd_ca_file.startswith("/etc/podnet/etcd/") and len(cfg.etcd) == 2
            if conf.relay_replicas:
                assert cfg.relay == f"https://{conf.relay_cluster_ip}:5473"
                assert agent_mounts.get(cfg.relay_ca.rsplit("/", 1)[0]) is None      # a Secret, not a host path
                assert any(m["mountPath"] == cfg.relay_ca.rsplit("/", 1)[0] for m in agent["volumeMounts"])
        else:
            assert parsed.lib_dir == "/opt/podnet" and parsed.host_prefix == "/host"


def test_relays_serve_the_agents_service_account_behind_a_fixed_cluster_ip() -> None:
    docs = render(VARIANTS["relay"])
    relay = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "podnet-relay")
    svc = next(d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == "podnet-relay")
    pod = relay["spec"]["template"]["spec"]
    assert relay["spec"]["replicas"] == 3 and pod["hostNetwork"] and svc["spec"]["clusterIP"] == "10.96.0.20"
    argv = pod["containers"][0]["args"]
    assert parser().parse_args(argv).allow == ["system:serviceaccount:podnet-system:podnet-agent"]
    assert pod["serviceAccountName"] == "podnet-relay"
    role = next(d for d in docs if d["kind"] == "ClusterRole" and d["metadata"]["name"] == "podnet-relay")
    assert {"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"], "verbs": ["create"]} in role["rules"]
    assert not any(set(r["verbs"]) - {"list", "watch", "create"} for r in role["rules"]), "a relay only reads"
    ds_pod = kind(docs, "DaemonSet")["spec"]["template"]["spec"]
    ca = next(v for v in ds_pod["volumes"] if v["name"] == "relay-ca")
    assert ca["secret"]["items"] == [{"key": "ca.crt", "path": "ca.crt"}], "the agents get the CA, not the key"


def test_with_encryption_wireguard_go_runs_in_its_own_container_sharing_the_socket_dir() -> None:
    """An agent container restart kills every process in it: wireguard-go lives beside it, and the
    agent (wireguard-go: external) only configures it through the shared /var/run/wireguard."""
    docs = render(VARIANTS["wireguard"])
    pod = kind(docs, "DaemonSet")["spec"]["template"]["spec"]
    agent, wg = pod["containers"]
    assert wg["name"] == "wireguard" and wg["command"][0] == "wireguard-go" and wg["securityContext"]["privileged"]
    host = {v["name"]: v["hostPath"]["path"] for v in pod["volumes"] if "hostPath" in v}
    for c in (agent, wg):
        assert {host.get(m["name"]) for m in c["volumeMounts"] if m["mountPath"] == "/var/run/wireguard"} == \
            {"/var/run/wireguard"}
    settings = yaml.safe_load(kind(docs, "ConfigMap")["data"]["agent.yaml"])
    assert settings["encryption"] == "wireguard" and settings["wireguard-go"] == "external"
    assert len(render(DeployConfig())[-1]["spec"]["template"]["spec"]["containers"]) == 1


def test_with_bgp_bird_runs_in_its_own_container_once_the_agent_wrote_its_config() -> None:
    docs = render(VARIANTS["bgp"])
    pod = kind(docs, "DaemonSet")["spec"]["template"]["spec"]
    bird = next(c for c in pod["containers"] if c["name"] == "bird")
    assert "until [ -s /var/lib/podnet/bird/bird.conf ]" in bird["args"][0] and "exec bird -f" in bird["args"][0]
    host = {v["name"]: v["hostPath"]["path"] for v in pod["volumes"] if "hostPath" in v}
    assert {host[m["name"]] for m in bird["volumeMounts"]} == {"/var/lib/podnet"}
    settings = yaml.safe_load(kind(docs, "ConfigMap")["data"]["agent.yaml"])
    assert settings["bird"] == "external" and settings["bgp-peers"] == ["10.0.0.254/64600"]
    assert settings["no-nat-cidr"] == settings["cluster-cidr"]
    assert NodeConfig.load("", {k.replace("-", "_"): v for k, v in settings.items()}).routing == "bgp"


def test_lab_podnet_image_has_the_containerfiles_packages() -> None:
    """The lab builds the podnet image from Debian packages itself (no registry for the
    Containerfile's base): the package list must be the Containerfile's."""
    import re

    from podnet.lab.images import PODNET_PACKAGES
    text = (ROOT / "deploy/Containerfile").read_text()
    line = re.search(r"apt-get install -y --no-install-recommends ([^&]+)&&", text.replace("\\\n", " "))
    assert line is not None
    assert sorted(line.group(1).split()) == sorted(PODNET_PACKAGES)


def test_every_writable_host_path_is_per_node_in_the_kubelet_lab() -> None:
    """The kubelet lab gives each node its own copy of the paths podnet's DaemonSet mounts; a path
    left out is shared by every node of the lab (two nodes' wireguard-go once fought over one
    UAPI socket in /run/wireguard)."""
    import os

    from podnet.lab.kubelet import NODE_PATHS
    docs = [d for variant in (DeployConfig(), DeployConfig(encryption="wireguard"), DeployConfig(backend="bgp"))
            for d in render(variant)]
    ds = next(d for d in docs if d["kind"] == "DaemonSet")
    paths = set()
    for d in docs:
        if d["kind"] == "DaemonSet":
            paths |= {v["hostPath"]["path"] for v in d["spec"]["template"]["spec"]["volumes"] if "hostPath" in v}
    assert ds and paths
    read_only = {"/usr/bin"}                              # the host's Python, read by the init container
    canon = {os.path.normpath(p.replace("/var/run/", "/run/")) for p in paths - read_only}
    assert canon <= set(NODE_PATHS), sorted(canon - set(NODE_PATHS))
