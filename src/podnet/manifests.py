"""`podnet manifests`: the Kubernetes objects that install podnet on every node of a cluster
(`kubectl apply -f deploy/podnet.yaml`), rendered from a few settings.

  Namespace podnet-system, ServiceAccount, ClusterRole + Binding (least rights), ConfigMap
  podnet-config (the network settings), DaemonSet podnet-agent (one agent per node); with
  relay_replicas, Deployment + Service podnet-relay and its own ServiceAccount and ClusterRole
  (the agents list and watch the cluster-wide kinds from it: relay/).

The DaemonSet's init container installs the launchers into the host's /opt/cni/bin and a
copy of podnet for the host's Python into /opt/podnet; the agent then writes the node's
conflist into /etc/cni/net.d once the node is ready (kubelet keeps the node NotReady until
then) and leaves it in place when it stops, so pods stay deletable across an upgrade.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

NAMESPACE = "podnet-system"
NAME = "podnet-agent"
DEFAULT_IMAGE = "ghcr.io/podnet/podnet:0.1.0"


@dataclass
class DeployConfig:
    cluster_cidr: str = "10.244.0.0/16"
    cluster_cidr_v6: str = ""                 # optional second family
    backend: str = "vxlan"                    # vxlan | host-gw | bgp
    datastore: str = "kubernetes"             # kubernetes (Node podCIDRs + host-local) | etcd (cluster IPAM)
    ipam_mode: str = "cluster"                # etcd datastore: cluster | host-local | neutron (underlay)
    etcd_endpoints: str = ""                  # etcd datastore: comma-separated
    etcd_tls_secret: str = ""                 # etcd datastore: Secret with ca.crt, tls.crt, tls.key
    network: str = "podnet"
    image: str = DEFAULT_IMAGE
    network_policy: bool = True               # kubernetes datastore: enforce NetworkPolicy
    encryption: str = ""                      # wireguard: pod traffic between nodes encrypted
    bgp_peers: str = ""                       # bgp: external peers ADDR/AS[/PASSWORD], comma-separated
    no_nat: bool = False                      # bgp: the network routes the pod CIDRs (no masquerade)
    pod_network: str = "routed"               # routed | underlay (eth0 on the datacenter network, etcd datastore)
    underlay_link: str = "macvlan"            # underlay: macvlan | ipvlan
    underlay_interface: str = ""              # underlay: the NIC (default: the one holding the node's address)
    underlay_subnet: str = ""                 # underlay: the datacenter subnet(s), comma-separated
    underlay_gateway: str = ""                # underlay: its gateway(s), comma-separated
    service_cidr: str = "10.96.0.0/12"        # underlay: routed through the node (the leg)
    block_size: int = 26                      # etcd datastore, cluster IPAM: addresses per node block (/26 = 64)
    attachments: bool = True                  # pods' k8s.v1.cni.cncf.io/networks (the NAD CRD ships here too)
    cluster_network_policy: bool = True       # ship ClusterNetworkPolicy's CRD (the agent enforces it with NetworkPolicy)
    neutron_url: str = ""                     # ipam neutron: the Neutron endpoint (noauth, or …
    neutron_auth_url: str = ""                # … keystone v3 with neutron_credentials_secret)
    neutron_credentials_secret: str = ""      # a Secret holding credentials.json (mounted at /etc/podnet/neutron)
    neutron_network: str = ""                 # ipam neutron: the VMs' network (ID or name)
    neutron_address_pairs: str = "cidr"       # cidr | per-ip | none
    neutron_pool_size: int = 0
    relay_replicas: int = 0                   # podnet relays (0: the agents watch the API server themselves)
    relay_cluster_ip: str = ""                # the relay Service's fixed ClusterIP (agents reach it before DNS works)
    relay_tls_secret: str = "podnet-relay-tls"  # tls.crt/tls.key (a SAN for the ClusterIP) and ca.crt


RELAY = "podnet-relay"
RELAY_PORT = 5473
RELAY_TLS_DIR = "/etc/podnet/relay-tls"


def _meta(name: str, namespaced: bool = True) -> dict[str, Any]:
    m: dict[str, Any] = {"name": name, "labels": {"app.kubernetes.io/name": "podnet"}}
    if namespaced:
        m["namespace"] = NAMESPACE
    return m


def rbac() -> list[dict[str, Any]]:
    """Nodes: read all (peers, podCIDRs) and patch our own (VTEP MAC annotations); pods: read
    (GC of leftovers, NetworkPolicy selectors); namespaces and networkpolicies: read (NetworkPolicy);
    events: report.  Nothing else."""
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(NAME)},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": _meta(NAME, False),
         "rules": [
             {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list", "watch", "patch"]},
             {"apiGroups": [""], "resources": ["pods", "namespaces"], "verbs": ["get", "list", "watch"]},
             # a pod's network-status annotation (its attachments)
             {"apiGroups": [""], "resources": ["pods"], "verbs": ["patch"]},
             {"apiGroups": ["k8s.cni.cncf.io"], "resources": ["network-attachment-definitions"],
              "verbs": ["get", "list", "watch"]},
             {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"], "verbs": ["get", "list", "watch"]},
             {"apiGroups": ["policy.networking.k8s.io"], "resources": ["clusternetworkpolicies"],
              "verbs": ["get", "list", "watch"]},
             {"apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
         ]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": _meta(NAME, False),
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": NAME},
         "subjects": [{"kind": "ServiceAccount", "name": NAME, "namespace": NAMESPACE}]},
    ]


CONFIG_DIR = "/etc/podnet"
CONFIG_FILE = f"{CONFIG_DIR}/agent.yaml"


def agent_settings(c: DeployConfig) -> dict[str, Any]:
    """The agent's settings (agent/config.py NodeConfig keys) that are the same on every node;
    what differs per node (its name, its address) comes from the downward API as flags."""
    s: dict[str, Any] = {
        "routing": c.backend, "datastore": c.datastore,
        "cluster-cidr": [x for x in (c.cluster_cidr, c.cluster_cidr_v6) if x],
        "network": c.network, "socket": "/run/podnet/agent.sock", "log-level": "INFO",
        "cni-conf-dir": "/host/etc/cni/net.d", "ipam-data-dir": "/var/lib/cni/networks",
        "state-dir": "/var/lib/podnet",
    }
    if c.encryption:
        s.update({"encryption": c.encryption, "wireguard-go": "external"})    # the wireguard container runs it
    if c.backend == "bgp":
        s["bird"] = "external"                                                  # the bird container runs it
        s["bgp-peers"] = [p for p in c.bgp_peers.split(",") if p]
        if c.no_nat:
            s["no-nat-cidr"] = list(s["cluster-cidr"])
    if c.pod_network == "underlay":
        del s["routing"]                      # nothing to route: the datacenter network carries pod traffic
        s.update({"pod-network": "underlay", "underlay-link": c.underlay_link,
                  "underlay-subnet": [x for x in c.underlay_subnet.split(",") if x],
                  "underlay-gateway": [x for x in c.underlay_gateway.split(",") if x],
                  "service-cidr": [x for x in c.service_cidr.split(",") if x], "network-policy": c.network_policy})
        if c.underlay_interface:
            s["underlay-interface"] = c.underlay_interface
    if c.datastore == "kubernetes":
        s["network-policy"] = c.network_policy
    if c.relay_replicas:
        s.update({"relay": f"https://{c.relay_cluster_ip}:{RELAY_PORT}", "relay-ca": f"{RELAY_TLS_DIR}/ca.crt"})
    s["attachments"] = c.attachments
    if c.datastore == "etcd":
        s["etcd"] = [e for e in c.etcd_endpoints.split(",") if e]
        s["ipam-mode"] = c.ipam_mode
        s["block-size"] = c.block_size
        if c.ipam_mode == "neutron":
            s.update({"neutron-network": c.neutron_network, "neutron-address-pairs": c.neutron_address_pairs,
                      "neutron-pool-size": c.neutron_pool_size})
            if c.neutron_url:
                s["neutron-url"] = c.neutron_url
            if c.neutron_auth_url:
                s.update({"neutron-auth-url": c.neutron_auth_url,
                          "neutron-credentials-file": "/etc/podnet/neutron/credentials.json"})
        if c.etcd_tls_secret:
            s.update({"etcd-ca-file": "/etc/podnet/etcd/ca.crt", "etcd-cert-file": "/etc/podnet/etcd/tls.crt",
                      "etcd-key-file": "/etc/podnet/etcd/tls.key"})
    return s


def config_map(c: DeployConfig) -> dict[str, Any]:
    import yaml
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta("podnet-config"),
            "data": {"agent.yaml": yaml.safe_dump(agent_settings(c), sort_keys=False)}}


# hostPath volumes: (name, host path, mount path in the container, type, propagation)
HOST_PATHS = [
    ("cni-bin", "/opt/cni/bin", "/host/opt/cni/bin", "DirectoryOrCreate", None),        # launchers
    ("podnet-lib", "/opt/podnet", "/host/opt/podnet", "DirectoryOrCreate", None),       # podnet for the host's Python
    ("cni-conf", "/etc/cni/net.d", "/host/etc/cni/net.d", "DirectoryOrCreate", None),   # the node's conflist
    ("host-usr-bin", "/usr/bin", "/host/usr/bin", "Directory", None),                   # read: the host's Python version
    ("run-podnet", "/run/podnet", "/run/podnet", "DirectoryOrCreate", None),            # the agent's socket
    ("var-lib-cni", "/var/lib/cni", "/var/lib/cni", "DirectoryOrCreate", None),         # host-local leases
    ("var-lib-podnet", "/var/lib/podnet", "/var/lib/podnet", "DirectoryOrCreate", None),  # DHCP leases, state
    ("run-netns", "/run/netns", "/run/netns", "DirectoryOrCreate", "HostToContainer"),  # pod netns bind mounts
]
WIREGUARD_RUN = ("run-wireguard", "/var/run/wireguard", "/var/run/wireguard", "DirectoryOrCreate", None)  # UAPI socket


def daemonset(c: DeployConfig) -> dict[str, Any]:
    env = [{"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
           {"name": "NODE_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}}]
    args = ["agent", "--config", CONFIG_FILE, "--node", "$(NODE_NAME)", "--underlay-addr", "$(NODE_IP)"]
    mounts: list[dict[str, Any]] = [{"name": n, "mountPath": m, **({"mountPropagation": p} if p else {})}
                                    for n, _, m, _, p in HOST_PATHS if n not in ("host-usr-bin", "podnet-lib", "cni-bin")]
    mounts.append({"name": "config", "mountPath": CONFIG_DIR, "readOnly": True})
    volumes: list[dict[str, Any]] = [{"name": n, "hostPath": {"path": h, "type": t}} for n, h, _, t, _ in HOST_PATHS]
    volumes.append({"name": "config", "configMap": {"name": "podnet-config"}})
    if c.datastore == "etcd" and c.etcd_tls_secret:
        mounts.append({"name": "etcd-tls", "mountPath": "/etc/podnet/etcd", "readOnly": True})
        volumes.append({"name": "etcd-tls", "secret": {"secretName": c.etcd_tls_secret, "defaultMode": 0o400}})
    if c.relay_replicas:        # the relay's CA only (the agent verifies the relay with it)
        mounts.append({"name": "relay-ca", "mountPath": RELAY_TLS_DIR, "readOnly": True})
        volumes.append({"name": "relay-ca", "secret": {"secretName": c.relay_tls_secret, "defaultMode": 0o444,
                                                       "items": [{"key": "ca.crt", "path": "ca.crt"}]}})
    if c.ipam_mode == "neutron" and c.neutron_credentials_secret:
        mounts.append({"name": "neutron-credentials", "mountPath": "/etc/podnet/neutron", "readOnly": True})
        volumes.append({"name": "neutron-credentials", "secret": {"secretName": c.neutron_credentials_secret,
                                                                 "defaultMode": 0o400}})
    install_mounts = [{"name": n, "mountPath": m, **({"readOnly": True} if n == "host-usr-bin" else {})}
                      for n, _, m, _, _ in HOST_PATHS if n in ("cni-bin", "podnet-lib", "host-usr-bin")]
    probe = {"periodSeconds": 10, "timeoutSeconds": 5, "failureThreshold": 3}
    agent = {
        "name": "agent", "image": c.image, "command": ["podnet"], "args": args,
        "env": env,
        # privileged: the agent writes net sysctls (/proc/sys is read-only otherwise), enters pod
        # network namespaces (setns: CAP_SYS_ADMIN), makes links, routes and nftables rules
        # (CAP_NET_ADMIN), sends DHCP on raw sockets (CAP_NET_RAW) and loads ifb/vxlan modules.
        "securityContext": {"privileged": True,
                            "capabilities": {"add": ["NET_ADMIN", "NET_RAW", "SYS_ADMIN"]}},
        "resources": {"requests": {"cpu": "50m", "memory": "100Mi"}, "limits": {"memory": "400Mi"}},
        "livenessProbe": {"exec": {"command": ["podnet", "health", "--socket", "/run/podnet/agent.sock"]},
                          "initialDelaySeconds": 10, **probe},
        "readinessProbe": {"exec": {"command": ["podnet", "health", "--ready", "--socket", "/run/podnet/agent.sock"]},
                           **probe},
        "volumeMounts": mounts,
    }
    containers = [agent]
    if c.encryption == "wireguard":
        name, host, mount, kind, _ = WIREGUARD_RUN
        volumes.append({"name": name, "hostPath": {"path": host, "type": kind}})
        agent["volumeMounts"] = [*mounts, {"name": name, "mountPath": mount}]
        containers.append({
            # wireguard-go in a container of its own: restarting or upgrading the agent's container
            # kills every process in it, and the tunnel must outlive that (pods keep their traffic).
            # The agent configures it over its UAPI socket in the shared /var/run/wireguard.
            "name": "wireguard", "image": c.image, "command": ["wireguard-go", "-f", "podnet.wg"],
            "env": [{"name": "LOG_LEVEL", "value": "error"}],
            "securityContext": {"privileged": True, "capabilities": {"add": ["NET_ADMIN"]}},   # /dev/net/tun, the link
            "resources": {"requests": {"cpu": "50m", "memory": "30Mi"}, "limits": {"memory": "200Mi"}},
            "volumeMounts": [{"name": name, "mountPath": mount}],
        })
    if c.backend == "bgp":
        conf = "/var/lib/podnet/bird/bird.conf"
        containers.append({
            # BIRD in a container of its own, for the same reason as wireguard-go: the agent's
            # restarts must not drop the node's BGP sessions.  It starts once the agent has
            # written (and checked) its first configuration; the agent then only reconfigures it.
            "name": "bird", "image": c.image, "command": ["sh", "-c"],
            "args": [f"until [ -s {conf} ]; do sleep 1; done; exec bird -f -c {conf} "
                     "-s /var/lib/podnet/bird/bird.ctl -P /var/lib/podnet/bird/bird.pid"],
            "securityContext": {"capabilities": {"add": ["NET_ADMIN", "NET_BIND_SERVICE", "NET_RAW"]}},
            "resources": {"requests": {"cpu": "20m", "memory": "20Mi"}, "limits": {"memory": "200Mi"}},
            "volumeMounts": [{"name": "var-lib-podnet", "mountPath": "/var/lib/podnet"}],
        })
    install = {
        "name": "install", "image": c.image, "command": ["podnet"],
        "args": ["install", "--host-prefix", "/host", "--bin-dir", "/opt/cni/bin", "--lib-dir", "/opt/podnet",
                 "--interpreter", "/usr/bin/python3", "--kubernetes-node"],
        "securityContext": {"runAsUser": 0, "allowPrivilegeEscalation": False,
                            "capabilities": {"drop": ["ALL"], "add": ["CHOWN", "DAC_OVERRIDE", "FOWNER"]}},
        "volumeMounts": install_mounts,
    }
    return {
        "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": _meta(NAME),
        "spec": {
            "selector": {"matchLabels": {"app.kubernetes.io/name": "podnet"}},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
            "template": {
                "metadata": {"labels": {"app.kubernetes.io/name": "podnet"}},
                "spec": {
                    "serviceAccountName": NAME,
                    "hostNetwork": True,          # the agent programs the node's own network namespace
                    "hostPID": True,              # CNI_NETNS may be /proc/<pid>/ns/net of a sandbox
                    "dnsPolicy": "ClusterFirstWithHostNet",
                    "priorityClassName": "system-node-critical",
                    "tolerations": [{"operator": "Exists"}],          # every node, tainted ones too
                    "terminationGracePeriodSeconds": 10,             # SIGTERM: the conflist stays
                    "initContainers": [install],
                    "containers": containers,
                    "volumes": volumes,
                },
            },
        },
    }


def nad_crd() -> dict[str, Any]:
    """The Network Plumbing Working Group's NetworkAttachmentDefinition (k8s.cni.cncf.io/v1), as
    Multus installs it: a namespaced object whose spec.config is a CNI config as a string."""
    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "network-attachment-definitions.k8s.cni.cncf.io"},
            "spec": {"group": "k8s.cni.cncf.io", "scope": "Namespaced",
                     "names": {"plural": "network-attachment-definitions", "singular": "network-attachment-definition",
                               "kind": "NetworkAttachmentDefinition", "shortNames": ["net-attach-def"]},
                     "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                         "description": "A network a pod can attach to (k8s.v1.cni.cncf.io/networks): a CNI config",
                         "type": "object", "properties": {
                             "apiVersion": {"type": "string"}, "kind": {"type": "string"}, "metadata": {"type": "object"},
                             "spec": {"type": "object", "properties": {"config": {"type": "string"}}}}}}}]}}


CNP_CRD = "policy.networking.k8s.io_clusternetworkpolicies.v0.3.1.yaml"


def cnp_crd() -> dict[str, Any]:
    """ClusterNetworkPolicy's CRD as network-policy-api v0.3.1 publishes it (standard channel;
    src/podnet/data/README.md says why it is shipped unmodified)."""
    from importlib.resources import files

    import yaml
    return dict(yaml.safe_load(files("podnet").joinpath("data", CNP_CRD).read_text()))


def relay_objects(c: DeployConfig) -> list[dict[str, Any]]:
    """The relays (relay/): hostNetwork (they must work before the pod network does: the agents
    wait for them to get ready), one per node at most, behind a Service with a fixed ClusterIP
    that kube-proxy answers on every node before DNS runs.  Rights: read the five kinds, and ask
    the API server who a token belongs to (TokenReview).  The serving certificate is the
    operator's (cert-manager or by hand): a Secret with tls.crt, tls.key (a SAN for the
    ClusterIP) and ca.crt."""
    labels = {"app.kubernetes.io/name": RELAY}
    meta = {**_meta(RELAY), "labels": labels}
    tls = "/etc/podnet/relay-tls"
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {**_meta(RELAY, False),
                                                                                          "labels": labels},
         "rules": [
             {"apiGroups": [""], "resources": ["pods", "namespaces", "nodes"], "verbs": ["list", "watch"]},
             {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"], "verbs": ["list", "watch"]},
             {"apiGroups": ["policy.networking.k8s.io"], "resources": ["clusternetworkpolicies"],
              "verbs": ["list", "watch"]},
             {"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"], "verbs": ["create"]},
         ]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {**_meta(RELAY, False), "labels": labels},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": RELAY},
         "subjects": [{"kind": "ServiceAccount", "name": RELAY, "namespace": NAMESPACE}]},
        {"apiVersion": "v1", "kind": "Service", "metadata": meta,
         "spec": {"selector": labels, "clusterIP": c.relay_cluster_ip,
                  "ports": [{"name": "relay", "port": RELAY_PORT, "targetPort": RELAY_PORT, "protocol": "TCP"}]}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
         "spec": {
             "replicas": c.relay_replicas,
             "selector": {"matchLabels": labels},
             "template": {
                 "metadata": {"labels": labels},
                 "spec": {
                     "serviceAccountName": RELAY,
                     "hostNetwork": True,
                     "priorityClassName": "system-cluster-critical",
                     "tolerations": [{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists"},
                                     {"key": "node.kubernetes.io/not-ready", "operator": "Exists"},
                                     {"key": "CriticalAddonsOnly", "operator": "Exists"}],
                     "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                         {"labelSelector": {"matchLabels": labels}, "topologyKey": "kubernetes.io/hostname"}]}},
                     "containers": [{
                         "name": "relay", "image": c.image, "command": ["podnet"],
                         "args": ["relay", "--listen", f"0.0.0.0:{RELAY_PORT}", "--tls-cert", f"{tls}/tls.crt",
                                  "--tls-key", f"{tls}/tls.key",
                                  "--allow", f"system:serviceaccount:{NAMESPACE}:{NAME}"],
                         "ports": [{"containerPort": RELAY_PORT, "name": "relay"}],
                         "readinessProbe": {"httpGet": {"path": "/readyz", "port": RELAY_PORT, "scheme": "HTTPS"},
                                            "periodSeconds": 5},
                         "livenessProbe": {"httpGet": {"path": "/healthz", "port": RELAY_PORT, "scheme": "HTTPS"},
                                           "initialDelaySeconds": 30, "periodSeconds": 10},
                         "resources": {"requests": {"cpu": "200m", "memory": "256Mi"},
                                       "limits": {"memory": "1Gi"}},
                         "securityContext": {"allowPrivilegeEscalation": False, "runAsNonRoot": True,
                                             "runAsUser": 65534, "capabilities": {"drop": ["ALL"]}},
                         "volumeMounts": [{"name": "tls", "mountPath": tls, "readOnly": True}],
                     }],
                     "volumes": [{"name": "tls", "secret": {"secretName": c.relay_tls_secret, "defaultMode": 0o444}}],
                 },
             },
         }},
    ]


def render(c: DeployConfig) -> list[dict[str, Any]]:
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE,
                                                                "labels": {"app.kubernetes.io/name": "podnet"}}}
    crds = [*([nad_crd()] if c.attachments else []), *([cnp_crd()] if c.cluster_network_policy else [])]
    relays = relay_objects(c) if c.relay_replicas else []
    return [ns, *crds, *rbac(), *relays, config_map(c), daemonset(c)]


def to_yaml(docs: list[dict[str, Any]]) -> str:
    import yaml

    class Dumper(yaml.SafeDumper):
        """Multi-line strings (the agent's config file) as literal blocks, editable in place."""

    def literal(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)
    Dumper.add_representer(str, literal)
    head = "# podnet: kubectl apply -f podnet.yaml   (rendered by `podnet manifests`; edit podnet-config)\n"
    return head + yaml.dump_all(docs, Dumper=Dumper, sort_keys=False, default_flow_style=False)
