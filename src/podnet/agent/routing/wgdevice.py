"""The node's WireGuard device, `podnet.wg`: which implementation runs it, and keeping it alive.

The kernel's WireGuard is used when `ip link add type wireguard` works.  Otherwise (this kind
of machine: modules off, no WireGuard built in) `wireguard-go` runs it from a TUN device, as a
process of its own — started in its own session, never stopped by the agent — so an agent that
restarts or dies leaves pod traffic flowing (Cilium dropped its in-agent userspace WireGuard for
exactly that; daemon.py).  A restarted agent adopts the running device through its UAPI socket.
If wireguard-go dies, its TUN device goes and podnet's routes through it with it (IPv4 silently:
the kernel reports no route deletion for a vanished device), so the agent follows the process
itself, and the reconcile loop runs at once, starts a new wireguard-go and configures it.

wireguard-go's UAPI socket is always `/var/run/wireguard/<device>.sock` (it also watches that
path, and exits when it is removed).  Several lab nodes share one filesystem, so with
`run_dir` set the process runs in a private mount namespace with `run_dir` bound over
/run/wireguard: each node's socket is `<run_dir>/podnet.wg.sock`, and on a real node (run_dir
unset) `wg show podnet.wg` works as usual.

On Kubernetes the DaemonSet runs wireguard-go in a container of its own beside the agent's
(`external`): a container restart kills every process in it, so an agent upgrade would otherwise
take the tunnel down.  The agent then only waits for the socket (not ready until it answers).
"""
from __future__ import annotations

import os
import shutil
from collections.abc import Callable

from ...net.wguapi import Uapi
from .daemon import DaemonError, SocketDaemon

WG_DEV = "podnet.wg"
STANDARD_RUN_DIR = "/var/run/wireguard"


class UserspaceDevice:
    """podnet.wg run by wireguard-go; configured over UAPI."""
    kind = "wireguard-go"

    def __init__(self, run_dir: str = "", log_path: str = "", start_timeout: float = 10.0, external: bool = False) -> None:
        self.run_dir = run_dir or STANDARD_RUN_DIR
        self.private_mount = bool(run_dir) and os.path.realpath(run_dir) != os.path.realpath(STANDARD_RUN_DIR)
        self.uapi = Uapi(os.path.join(self.run_dir, f"{WG_DEV}.sock"))
        self.daemon = SocketDaemon("wireguard-go", self.uapi.path, self.uapi.alive, log_path, start_timeout, external,
                                   env={"LOG_LEVEL": "error"})

    def ensure(self, on_exit: Callable[[], None] | None = None) -> bool:
        """wireguard-go runs and answers; True when it was (re)started just now (its
        configuration is empty: the caller configures everything)."""
        return self.daemon.ensure(self._argv, on_exit)

    def _argv(self) -> list[str]:
        exe = shutil.which("wireguard-go")
        if exe is None:
            raise DaemonError("encryption wireguard: this kernel has no WireGuard and wireguard-go is not installed "
                              "(Debian: apt install wireguard-go)")
        os.makedirs(self.run_dir, mode=0o700, exist_ok=True)
        if not self.private_mount:
            return [exe, "-f", WG_DEV]
        os.makedirs("/run/wireguard", mode=0o700, exist_ok=True)
        return ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                'mount --bind "$0" /run/wireguard && exec "$1" -f "$2"', self.run_dir, exe, WG_DEV]

    def pid(self) -> int:
        return self.daemon.pid()
