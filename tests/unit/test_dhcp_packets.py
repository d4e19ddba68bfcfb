"""podnet-dhcp's messages and config, without a network: what goes on the wire, what is read
back from a server's reply, and config errors naming their field."""
from __future__ import annotations

import pytest
from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from podnet.cni.errors import CNIError
from podnet.cni.request import Request, from_env
from podnet.dhcp import packets
from podnet.plugins import dhcp as plugin

MAC = "02:00:00:00:00:01"


def test_discover_is_a_broadcast_with_client_id_hostname_and_requested_options() -> None:
    frame = Ether(packets.discover(MAC, 77, b"c1/lan/eth0", [(12, b"web-0")], (1, 3, 121)))
    assert frame[Ether].dst == "ff:ff:ff:ff:ff:ff" and frame[IP].src == "0.0.0.0" and frame[UDP].dport == 67
    assert frame[BOOTP].xid == 77 and frame[BOOTP].flags == 0x8000 and frame[BOOTP].chaddr[:6] == bytes.fromhex("020000000001")
    opts = dict(o for o in frame[DHCP].options if isinstance(o, tuple))
    assert opts["message-type"] == 1 and opts["client_id"] == b"c1/lan/eth0" and opts["hostname"] == b"web-0"
    assert opts["param_req_list"] == [1, 3, 121]


def _reply(kind: str, xid: int = 9, **extra: object) -> bytes:
    opts = [("message-type", kind), ("server_id", "10.0.0.1"), ("subnet_mask", "255.255.255.0"),
            ("router", "10.0.0.1"), ("name_server", "10.0.0.53", "10.0.0.54"), ("domain", b"lan.test"),
            ("lease_time", 600), ("renewal_time", 100), ("rebinding_time", 500),
            ("classless_static_routes", "10.50.0.0/16:10.0.0.1"), "end"]
    return bytes(Ether(src="02:00:00:00:00:fe", dst=MAC) / IP(src="10.0.0.1", dst="10.0.0.7") /
                 UDP(sport=67, dport=68) / BOOTP(op=2, xid=xid, yiaddr="10.0.0.7") / DHCP(options=opts))


def test_an_ack_is_read_back_whole_and_other_transactions_are_ignored() -> None:
    r = packets.parse(_reply("ack"), 9)
    assert r is not None and r.kind == "ACK" and r.yiaddr == "10.0.0.7" and r.server_mac == "02:00:00:00:00:fe"
    assert (r.mask, r.routers, r.dns, r.domain) == ("255.255.255.0", ["10.0.0.1"], ["10.0.0.53", "10.0.0.54"], "lan.test")
    assert (r.lease_time, r.t1, r.t2) == (600, 100, 500)
    assert r.classless == [("10.50.0.0/16", "10.0.0.1")]
    assert packets.parse(_reply("ack"), 10) is None, "a reply to another transaction was taken"
    assert packets.parse(_reply("nak"), 9).kind == "NAK"  # type: ignore[union-attr]


def req(ipam: dict[str, object], args: str = "") -> Request:
    import json
    env = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1", "CNI_NETNS": "/run/netns/x", "CNI_IFNAME": "eth0",
           "CNI_PATH": "/opt/cni/bin", "CNI_ARGS": args}
    conf = {"cniVersion": "1.0.0", "name": "lan", "type": "podnet-macvlan", "ipam": {"type": "podnet-dhcp", **ipam}}
    return from_env(env, json.dumps(conf).encode())


def test_config_keys_of_the_reference_plugin() -> None:
    c = plugin.parse_conf(req({"provide": [{"option": "host-name", "fromArg": "K8S_POD_NAME"},
                                           {"option": "dhcp-client-identifier", "value": "pod-a"},
                                           {"option": "60", "value": "podnet"}],
                               "request": [{"option": "42"}], "daemonSocketPath": "/run/cni/dhcp.sock",
                               "priority": 3}, "K8S_POD_NAME=web-0"))
    assert c.provide == ((12, b"web-0"), (60, b"podnet")) and c.wire_id == b"pod-a"
    assert 42 in c.request and 121 in c.request
    assert plugin.parse_conf(req({"request": [{"skipDefault": True, "option": "routers"}]})).request == (1, 3)


@pytest.mark.parametrize("ipam,field", [
    ({"provide": [{"option": "host-name", "fromArg": "K8S_POD_NAME"}]}, "ipam.provide[0].fromArg"),
    ({"provide": [{"option": "no-such-option", "value": "x"}]}, "ipam.provide[0].option"),
    ({"request": [{"option": 300}]}, "ipam.request[0].option"),
    ({"timeout": 0}, "ipam.timeout"),
])
def test_bad_config_is_code_7_naming_the_field(ipam: dict[str, object], field: str) -> None:
    with pytest.raises(CNIError) as e:
        plugin.parse_conf(req(ipam))
    assert e.value.code == 7 and field in e.value.msg


def test_a_nak_starts_over_with_a_fresh_discover(monkeypatch: pytest.MonkeyPatch) -> None:
    """A server that NAKs the first REQUEST: the client must DISCOVER again and take the second
    offer (RFC 2131 §3.1.4).  The wire is a socketpair; the server is a thread speaking scapy."""
    import contextlib
    import socket
    import threading

    from podnet.dhcp import client

    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    seen: list[str] = []

    def server() -> None:
        requests = 0
        while True:
            frame = Ether(theirs.recv(4096))
            kind = {1: "DISCOVER", 3: "REQUEST"}[dict(o for o in frame[DHCP].options if isinstance(o, tuple))["message-type"]]
            seen.append(kind)
            xid = frame[BOOTP].xid
            if kind == "DISCOVER":
                theirs.send(_reply("offer", xid))
            else:
                requests += 1
                theirs.send(_reply("nak" if requests == 1 else "ack", xid))
                if requests == 2:
                    return

    @contextlib.contextmanager
    def fake_socket(netns_path: str, ifname: str, bring_up: bool = True):  # type: ignore[no-untyped-def]
        yield ours, MAC
    monkeypatch.setattr(client, "pod_socket", fake_socket)
    t = threading.Thread(target=server, daemon=True)
    t.start()
    ack, mac = client.acquire("/run/netns/none", "eth0", b"c1/lan/eth0", [], (1, 3), timeout=5)
    assert ack.kind == "ACK" and ack.yiaddr == "10.0.0.7" and mac == MAC
    assert seen == ["DISCOVER", "REQUEST", "DISCOVER", "REQUEST"]
