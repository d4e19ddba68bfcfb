"""`podnet relay`: follow the five kinds upstream (one informer each, the agent's own), serve them.

Run one relay per a few hundred nodes (a Deployment behind a Service); agents given `relay: URL`
read their cluster-wide lists and watches from it and everything else (their own Node, a pod's
GET, Events, leases) from the API server."""
from __future__ import annotations

import logging
import signal
import ssl
import threading
from collections.abc import Callable
from typing import Any

from . import trim
from .feed import Feed
from .server import Authenticator, RelayHTTPServer, Route

log = logging.getLogger(__name__)

def _default_allow() -> list[str]:
    """The agents' ServiceAccount as the manifests make it."""
    from ..manifests import NAME, NAMESPACE
    return [f"system:serviceaccount:{NAMESPACE}:{NAME}"]


def _kinds() -> list[tuple[str, Any, str, str, trim.Trim, bool]]:
    """(path, resource, apiVersion, list kind, trimmer, optional)."""
    from lightkube.resources.core_v1 import Namespace, Node, Pod
    from lightkube.resources.networking_v1 import NetworkPolicy

    from ..agent.policy.watch import ClusterNetworkPolicy
    return [("/api/v1/pods", Pod, "v1", "PodList", trim.pod, False),
            ("/api/v1/namespaces", Namespace, "v1", "NamespaceList", trim.namespace, False),
            ("/api/v1/nodes", Node, "v1", "NodeList", trim.node, False),
            ("/apis/networking.k8s.io/v1/networkpolicies", NetworkPolicy, "networking.k8s.io/v1",
             "NetworkPolicyList", trim.whole, False),
            ("/apis/policy.networking.k8s.io/v1beta1/clusternetworkpolicies", ClusterNetworkPolicy,
             "policy.networking.k8s.io/v1beta1", "ClusterNetworkPolicyList", trim.whole, True)]


def _key(obj: dict[str, Any]) -> str:
    m = obj["metadata"]
    return f"{m['namespace']}/{m['name']}" if m.get("namespace") else str(m["name"])


class Relay:
    def __init__(self, client: Any, listen: tuple[str, int], allow: list[str], keep_annotations: list[str],
                 tls: ssl.SSLContext | None = None, watch_timeout: int = 300) -> None:
        from ..agent.kubewatch import Informer
        self.informers: list[Any] = []
        routes: dict[str, Route] = {}
        for path, resource, api_version, list_kind, trimmer, optional in _kinds():
            feed = Feed(resource.__name__, api_version)
            keep = self._keeper(trimmer, keep_annotations)
            inf = Informer(client, resource, on_event=self._on_event(feed), watch_timeout=watch_timeout,
                           what=f"{resource.__name__}s", optional=optional, keep=keep)
            inf.on_relist = self._on_relist(feed, inf)
            self.informers.append(inf)
            routes[path] = Route(feed, list_kind, self._absent(inf))
        self.routes = routes
        self.server = RelayHTTPServer(listen, routes, Authenticator(self._reviewer(client), allow), tls)
        self._stops: list[Callable[[], None]] = []

    @staticmethod
    def _keeper(trimmer: trim.Trim, keep_annotations: list[str]) -> Callable[[Any], dict[str, Any]]:
        return lambda obj: trimmer(obj, keep_annotations)

    @staticmethod
    def _absent(inf: Any) -> Callable[[], bool]:
        return lambda: bool(inf.absent)

    @staticmethod
    def _on_event(feed: Feed) -> Callable[[str, Any], None]:
        def on_event(kind: str, obj: Any) -> None:
            feed.apply(kind, _key(obj), obj)
        return on_event

    @staticmethod
    def _on_relist(feed: Feed, inf: Any) -> Callable[[dict[str, Any]], None]:
        return lambda objs: feed.reset(objs, inf.list_rv)

    @staticmethod
    def _reviewer(client: Any) -> Callable[[str], tuple[str, list[str]] | None]:
        def review(token: str) -> tuple[str, list[str]] | None:
            from lightkube.models.authentication_v1 import TokenReviewSpec
            from lightkube.resources.authentication_v1 import TokenReview
            got = client.create(TokenReview(spec=TokenReviewSpec(token=token)))
            st = got.status
            if st is None or not st.authenticated or st.user is None:
                return None
            return str(st.user.username or ""), list(st.user.groups or [])
        return review

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.server.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        self._stops = [i.start() for i in self.informers]
        threading.Thread(target=self.server.serve_forever, name="podnet-relay-http", daemon=True).start()

    def stop(self) -> None:
        for s in self._stops:
            s()
        self.server.stop()


def run(kubeconfig: str, listen: str, allow: list[str], keep_annotations: list[str], tls_cert: str = "",
        tls_key: str = "") -> int:
    from lightkube import Client, KubeConfig
    host, _, port = listen.rpartition(":")
    config = KubeConfig.from_file(kubeconfig) if kubeconfig else KubeConfig.from_env()
    tls = None
    if tls_cert:
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(tls_cert, tls_key or None)
    relay = Relay(Client(config, field_manager="podnet-relay"), (host.strip("[]") or "0.0.0.0", int(port)),
                  allow or _default_allow(), keep_annotations, tls)
    relay.start()
    log.info("relay serving on %s:%d for %s", *relay.address, ", ".join(allow or _default_allow()))
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    done.wait()
    relay.stop()
    return 0
