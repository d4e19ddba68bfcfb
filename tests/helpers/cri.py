"""A minimal CRI client (runtime.v1.RuntimeService) for the kubelet-path test: just the pod
sandbox calls kubelet makes around networking.  Messages are encoded by hand from the public
CRI API definition (k8s.io/cri-api, api.proto) — field numbers noted beside each — and sent
with grpcio over the runtime's unix socket; no generated stubs, no crictl (Debian has none).

  RunPodSandboxRequest  {1: PodSandboxConfig config, 2: string runtime_handler}
  PodSandboxConfig      {1: PodSandboxMetadata metadata, 2: hostname, 3: log_directory,
                         5: repeated PortMapping port_mappings, …}
  PortMapping           {1: Protocol protocol (TCP = 0), 2: container_port, 3: host_port, 4: host_ip}
  PodSandboxMetadata    {1: name, 2: uid, 3: namespace, 4: uint32 attempt}
  RunPodSandboxResponse {1: pod_sandbox_id}
  Stop/RemovePodSandboxRequest, PodSandboxStatusRequest {1: pod_sandbox_id (, 2: bool verbose)}
  PodSandboxStatusResponse {1: PodSandboxStatus status}
  PodSandboxStatus      {1: id, 2: metadata, 3: state (0 READY, 1 NOTREADY), 4: created_at,
                         5: PodSandboxNetworkStatus network}
  PodSandboxNetworkStatus {1: ip}
"""
from __future__ import annotations

from typing import Any

SERVICE = "/runtime.v1.RuntimeService/"


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field(num: int, value: bytes | str | int) -> bytes:
    if isinstance(value, int):
        return _varint(num << 3) + _varint(value)
    raw = value.encode() if isinstance(value, str) else value
    return _varint((num << 3) | 2) + _varint(len(raw)) + raw


def parse(raw: bytes) -> dict[int, list[Any]]:
    """{field number: [values]}: varints as int, length-delimited as bytes."""
    out: dict[int, list[Any]] = {}
    i = 0
    while i < len(raw):
        key, i = _read_varint(raw, i)
        num, wire = key >> 3, key & 7
        if wire == 0:
            val, i = _read_varint(raw, i)
        elif wire == 2:
            n, i = _read_varint(raw, i)
            val, i = raw[i:i + n], i + n
        elif wire == 1:
            val, i = raw[i:i + 8], i + 8
        elif wire == 5:
            val, i = raw[i:i + 4], i + 4
        else:
            raise ValueError(f"wire type {wire}")
        out.setdefault(num, []).append(val)
    return out


def _read_varint(raw: bytes, i: int) -> tuple[int, int]:
    shift = n = 0
    while True:
        b = raw[i]
        i += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return n, i


class RuntimeClient:
    def __init__(self, socket_path: str, timeout: float = 60) -> None:
        import grpc
        self.channel = grpc.insecure_channel(f"unix://{socket_path}")
        self.timeout = timeout

    def _call(self, method: str, body: bytes) -> bytes:
        fn = self.channel.unary_unary(SERVICE + method)
        return bytes(fn(body, timeout=self.timeout))

    def run_pod_sandbox(self, name: str, uid: str, namespace: str, log_dir: str,
                        ports: tuple[tuple[int, int], ...] = ()) -> str:
        """ports: (container port, host port) pairs, TCP — a pod's hostPort."""
        meta = field(1, name) + field(2, uid) + field(3, namespace) + field(4, 0)
        config = field(1, meta) + field(2, name) + field(3, log_dir)
        for container_port, host_port in ports:
            config += field(5, field(1, 0) + field(2, container_port) + field(3, host_port))
        reply = parse(self._call("RunPodSandbox", field(1, config)))
        return str(reply[1][0].decode())

    def pod_sandbox_ip(self, sandbox_id: str) -> tuple[int, str]:
        """(state, primary IP) from PodSandboxStatus."""
        status = parse(parse(self._call("PodSandboxStatus", field(1, sandbox_id)))[1][0])
        network = parse(status.get(5, [b""])[0])
        return int(status.get(3, [0])[0]), network.get(1, [b""])[0].decode()

    def stop_pod_sandbox(self, sandbox_id: str) -> None:
        self._call("StopPodSandbox", field(1, sandbox_id))

    def remove_pod_sandbox(self, sandbox_id: str) -> None:
        self._call("RemovePodSandbox", field(1, sandbox_id))

    def close(self) -> None:
        self.channel.close()
