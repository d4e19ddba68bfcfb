"""Per-command, per-plugin latency histograms and error counts (prometheus-client)."""
from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

REGISTRY = CollectorRegistry()
LATENCY = Histogram("podnet_cni_request_seconds", "CNI request latency in the agent",
                    ["command", "plugin"], registry=REGISTRY,
                    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 30))
ERRORS = Counter("podnet_cni_errors_total", "CNI requests answered with an error", ["command", "plugin", "code"],
                 registry=REGISTRY)


ROUTING_WAKEUPS = Counter("podnet_routing_wakeups_total",
                          "times the routing loop woke (a pass: datastore event, kernel event, heartbeat, "
                          "periodic check)", registry=REGISTRY)


def observe(command: str, plugin: str, seconds: float, code: int) -> None:
    LATENCY.labels(command, plugin).observe(seconds)
    if code:
        ERRORS.labels(command, plugin, str(code)).inc()


def render() -> tuple[bytes, str]:
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


POLICY_LATENCY = Histogram("podnet_policy_program_seconds",
                           "policy table: one change, from event to nft commit, by the kind of object that changed "
                           "(Pod, Namespace, NetworkPolicy, ClusterNetworkPolicy, LocalPod for a CNI ADD/DEL, "
                           "Resync for the whole table)",
                           ["trigger"], registry=REGISTRY,
                           buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
POD_EVENT_WAIT = Histogram("podnet_policy_pod_event_seconds",
                           "a Pod event from its arrival at the agent (decoded off the watch) to its nft commit: "
                           "the queue before its batch and the batch itself",
                           registry=REGISTRY,
                           buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
POLICY_OBJECTS = Gauge("podnet_policy_objects", "NetworkPolicy table: sets, chains, rules and elements",
                       ["kind"], registry=REGISTRY)
POLICY_COUNT = Gauge("podnet_policies", "policies the agent holds, by kind and tier "
                     "(NetworkPolicy: tier \"\"; ClusterNetworkPolicy: Admin or Baseline)",
                     ["kind", "tier"], registry=REGISTRY)
POLICY_DENIED = Gauge("podnet_policy_pods_failed_closed", "local pods denied because their policy is unknown",
                      registry=REGISTRY)


def observe_policy(seconds: float, counts: dict[str, int], failed_closed: int = 0, trigger: str = "",
                   policies: dict[tuple[str, str], int] | None = None) -> None:
    """One programmed change: its latency under the kind of object that caused it, the table's
    size, and (when given) how many policies of each (kind, tier) the agent holds."""
    POLICY_LATENCY.labels(trigger or "unknown").observe(seconds)
    for (kind, tier), n in (policies or {}).items():
        POLICY_COUNT.labels(kind, tier).set(n)
    for kind, n in counts.items():
        POLICY_OBJECTS.labels(kind).set(n)
    POLICY_DENIED.set(failed_closed)
