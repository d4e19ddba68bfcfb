"""The relay's feed and HTTP side without a cluster: the agent's own Informer (lightkube) lists and
watches a relay whose feeds are fed by hand — paging, resuming from a version, quiet changes not
sent, 410 Gone and the relist it causes, tokens refused.  Against the real API server:
tests/cluster/test_relay.py."""
from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from lightkube import Client, KubeConfig
from lightkube.config.models import Cluster, User
from lightkube.resources.core_v1 import Pod

from podnet.agent.kubewatch import Informer
from podnet.relay.feed import Feed, Gone
from podnet.relay.server import Authenticator, RelayHTTPServer, Route


def pod(name: str, rv: int, labels: dict[str, str] | None = None, ip: str = "10.1.0.1") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "x", "resourceVersion": str(rv), "labels": labels or {}},
            "spec": {"containers": [{"name": "c"}], "nodeName": "n1"}, "status": {"podIP": ip}}


def wait_for(cond: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


# ------------------------------------------------------------------ the feed alone
def test_a_watch_from_a_list_gets_every_later_event_in_order() -> None:
    f = Feed("Pod", "v1")
    f.reset({"x/a": pod("a", 10)}, "10")
    rv, items = f.snapshot()
    assert rv == "10" and [json.loads(i)["metadata"]["name"] for i in items] == ["a"]
    gen, pos, first = f.start(rv)
    assert first == []
    f.apply("ADDED", "x/b", pod("b", 11))
    f.apply("MODIFIED", "x/a", pod("a", 12, {"app": "w"}))
    f.apply("DELETED", "x/b", pod("b", 13))
    pos, lines, _ = f.read(gen, pos, 0)
    got = [(json.loads(line)["type"], json.loads(line)["object"]["metadata"]["resourceVersion"]) for line in lines]
    assert got == [("ADDED", "11"), ("MODIFIED", "12"), ("DELETED", "13")]
    # resuming from the middle: exactly what came after it
    _, mid, _ = f.start("12")
    _, lines, _ = f.read(gen, mid, 0)
    assert [json.loads(line)["object"]["metadata"]["resourceVersion"] for line in lines] == ["13"]


def test_a_change_of_the_version_only_is_not_sent_but_is_listed() -> None:
    f = Feed("Pod", "v1")
    f.reset({"x/a": pod("a", 10)}, "10")
    gen, pos, _ = f.start("10")
    assert f.apply("MODIFIED", "x/a", pod("a", 11)) is False       # a status heartbeat, trimmed away
    assert f.apply("MODIFIED", "x/a", pod("a", 12, {"app": "w"})) is True
    _, lines, _ = f.read(gen, pos, 0)
    assert [json.loads(line)["object"]["metadata"]["resourceVersion"] for line in lines] == ["12"]
    assert f.quiet == 1
    f.apply("MODIFIED", "x/a", pod("a", 13, {"app": "w"}))
    rv, items = f.snapshot()
    assert rv == "13" and json.loads(items[0])["metadata"]["resourceVersion"] == "13"
    gen, pos, _ = f.start("13")                      # a list at a quiet version is a place to watch from
    f.apply("DELETED", "x/a", pod("a", 14, {"app": "w"}))
    _, lines, _ = f.read(gen, pos, 0)
    assert [json.loads(line)["type"] for line in lines] == ["DELETED"]


def test_a_version_older_than_the_kept_events_is_gone() -> None:
    f = Feed("Pod", "v1", max_events=3)
    f.reset({}, "1")
    for rv in range(2, 10):
        f.apply("ADDED", f"x/p{rv}", pod(f"p{rv}", rv))
    with pytest.raises(Gone):
        f.start("2")
    with pytest.raises(Gone):
        f.start("999")                                # never handed out
    gen, pos, _ = f.start("7")
    _, lines, _ = f.read(gen, pos, 0)
    assert len(lines) == 2


def test_an_upstream_relist_ends_every_open_watch() -> None:
    f = Feed("Pod", "v1")
    f.reset({}, "1")
    gen, pos, _ = f.start("1")
    f.reset({"x/a": pod("a", 50)}, "50")
    with pytest.raises(Gone):
        f.read(gen, pos, 0)
    with pytest.raises(Gone):
        f.start("1")


def test_a_heartbeat_storm_does_not_grow_the_versions_kept() -> None:
    f = Feed("Pod", "v1", max_events=10)
    f.reset({"x/a": pod("a", 1)}, "1")
    for rv in range(2, 5000):
        f.apply("MODIFIED", "x/a", pod("a", rv))
    assert len(f.at) <= 2 * 10 + 1 and not f.events
    f.start("4999")


def test_a_watch_from_any_version_starts_with_every_object() -> None:
    f = Feed("Pod", "v1")
    f.reset({"x/a": pod("a", 1), "x/b": pod("b", 2)}, "2")
    _, _, first = f.start("")
    assert sorted(json.loads(line)["object"]["metadata"]["name"] for line in first) == ["a", "b"]
    assert {json.loads(line)["type"] for line in first} == {"ADDED"}


# ------------------------------------------------------------------ over HTTP, with the agent's client
@pytest.fixture
def relay() -> Iterator[tuple[RelayHTTPServer, Feed]]:
    feed = Feed("Pod", "v1")
    auth = Authenticator(lambda t: ("system:serviceaccount:kube-system:podnet", []) if t == "good"
                         else (("someone-else", ["ops"]) if t == "other" else None),
                         ["system:serviceaccount:kube-system:podnet"])
    srv = RelayHTTPServer(("127.0.0.1", 0), {"/api/v1/pods": Route(feed, "PodList", lambda: False)}, auth)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield srv, feed
    finally:
        srv.stop()


def address(srv: RelayHTTPServer) -> tuple[str, int]:
    host, port = srv.server_address[:2]
    return str(host, "ascii") if isinstance(host, (bytes, bytearray)) else host, int(port)


def client(srv: RelayHTTPServer, token: str = "good") -> Client:
    host, port = address(srv)
    return Client(KubeConfig.from_one(cluster=Cluster(server=f"http://{host}:{port}"), user=User(token=token)))


def get(srv: RelayHTTPServer, path: str, token: str = "good") -> tuple[int, dict[str, Any]]:
    host, port = address(srv)
    conn = http.client.HTTPConnection(host, port, timeout=5)
    conn.request("GET", path, headers={"Authorization": f"Bearer {token}"} if token else {})
    r = conn.getresponse()
    body = r.read()
    conn.close()
    return r.status, json.loads(body)


def test_the_agents_informer_lists_in_pages_and_follows_the_watch(relay: tuple[RelayHTTPServer, Feed]) -> None:
    srv, feed = relay
    feed.reset({f"x/p{i}": pod(f"p{i}", i) for i in range(1, 1201)}, "1200")   # three pages of 500
    events: list[tuple[str, str]] = []
    inf = Informer(client(srv), Pod, on_event=lambda k, o: events.append((k, o.metadata.name)), what="Pods")
    stop = inf.start()
    try:
        wait_for(inf.synced.is_set)
        assert len(inf.snapshot()) == 1200
        feed.apply("MODIFIED", "x/p7", pod("p7", 1201, {"app": "db"}))
        feed.apply("DELETED", "x/p8", pod("p8", 1202))
        wait_for(lambda: len(events) == 2)
        assert events == [("MODIFIED", "p7"), ("DELETED", "p8")]
        assert inf.snapshot()["x/p7"].metadata.labels == {"app": "db"} and "x/p8" not in inf.snapshot()
        # the relay relists upstream: the open watch ends 410, the informer relists from the relay
        relists = inf.relists
        feed.reset({"x/q": pod("q", 2000)}, "2000")
        wait_for(lambda: inf.relists > relists)
        assert set(inf.snapshot()) == {"x/q"}
    finally:
        stop()


def test_lists_page_with_continue_and_a_stale_token_is_410(relay: tuple[RelayHTTPServer, Feed]) -> None:
    srv, feed = relay
    feed.reset({f"x/p{i}": pod(f"p{i}", i) for i in range(1, 6)}, "5")
    code, page = get(srv, "/api/v1/pods?limit=2")
    assert code == 200 and page["kind"] == "PodList" and len(page["items"]) == 2
    cont, names = page["metadata"]["continue"], [i["metadata"]["name"] for i in page["items"]]
    feed.apply("ADDED", "x/late", pod("late", 6))                # pages are one snapshot
    while cont:
        code, page = get(srv, f"/api/v1/pods?limit=2&continue={cont}")
        assert code == 200 and page["metadata"]["resourceVersion"] == "5"
        names += [i["metadata"]["name"] for i in page["items"]]
        cont = page["metadata"].get("continue", "")
    assert sorted(names) == sorted(f"p{i}" for i in range(1, 6))
    code, st = get(srv, "/api/v1/pods?limit=2&continue=nope:2")
    assert code == 410 and st["reason"] == "Expired"


def test_requests_without_a_served_token_are_refused(relay: tuple[RelayHTTPServer, Feed]) -> None:
    srv, feed = relay
    feed.reset({}, "1")
    assert get(srv, "/api/v1/pods", token="")[0] == 401
    assert get(srv, "/api/v1/pods", token="forged")[0] == 401
    code, st = get(srv, "/api/v1/pods", token="other")          # a real user the relay does not serve
    assert code == 403 and "--allow" in st["message"]
    code, st = get(srv, "/api/v1/secrets")
    assert code == 404
    code, st = get(srv, "/api/v1/pods?labelSelector=app%3Dx")
    assert code == 400 and "labelSelector" in st["message"]


def test_a_watch_from_a_forgotten_version_is_an_error_event_410(relay: tuple[RelayHTTPServer, Feed]) -> None:
    srv, feed = relay
    feed.reset({}, "1")
    host, port = address(srv)
    conn = http.client.HTTPConnection(host, port, timeout=5)
    conn.request("GET", "/api/v1/pods?watch=true&resourceVersion=999&timeoutSeconds=5",
                 headers={"Authorization": "Bearer good"})
    r = conn.getresponse()
    assert r.status == 200
    event = json.loads(r.readline())
    assert event["type"] == "ERROR" and event["object"]["code"] == 410
    conn.close()


def test_a_relay_that_has_not_listed_yet_answers_503(relay: tuple[RelayHTTPServer, Feed]) -> None:
    srv, _ = relay
    code, st = get(srv, "/api/v1/pods")
    assert code == 503 and "not listed" in st["message"]
