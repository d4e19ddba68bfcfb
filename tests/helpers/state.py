"""What kernel tests inspect after a plugin ran: host-local reservations, host-side veths, the
nftables ruleset of a namespace — and the bridge config most of them start from."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.helpers.cni import links_in, nsexec


def bridge_conf(tmp_path: Path, mode: dict[str, str], version: str = "1.0.0", **extra: Any) -> dict[str, Any]:
    conf: dict[str, Any] = {
        "cniVersion": version, "name": "ktest", "type": "podnet-bridge", "bridge": "pnbr0",
        "isGateway": True, "ipMasq": True,
        "ipam": {"type": "podnet-host-local", "subnet": "10.77.0.0/24", "dataDir": str(tmp_path / "ipam"),
                 "routes": [{"dst": "0.0.0.0/0"}]},
        **mode,
    }
    conf.update(extra)
    return conf


def reservations(tmp_path: Path, net: str = "ktest") -> list[str]:
    d = tmp_path / "ipam" / net
    if not d.is_dir():
        return []
    return sorted(f.name for f in d.iterdir() if f.is_file() and f.name != "lock"
                  and not f.name.startswith("last_reserved_ip"))


def host_veths(sandbox: str) -> list[str]:
    return [lk["ifname"] for lk in links_in(sandbox) if lk["ifname"].startswith("veth")]


def nft_ruleset(sandbox: str) -> str:
    return nsexec(sandbox, "nft", "list", "ruleset").stdout
