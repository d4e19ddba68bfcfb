"""SIG Network's ClusterNetworkPolicy conformance suite (sigs.k8s.io/network-policy-api v0.3.1,
`conformance/`, the ClusterNetworkPolicy profile) against podnet on the kubelet lab.

What it takes (scripts/cnp-conformance-build.sh, cached outside the checkout): the upstream suite
compiled as is (`go test -c`), and agnhost — the e2e test server its pods run — built from the lab's
Kubernetes release, packed as the image the suite's manifests name
(registry.k8s.io/e2e-test-images/agnhost:2.45: there is no registry here, so the name is what the
node's containerd has).  The suite runs from the fabric (where the API server is) with the lab's
admin kubeconfig, and writes its own report.

One adaptation, said here and in the README: this kernel has no SCTP, and the suite's pods all run
`agnhost porter` SCTP servers, which exit when their listen fails — the pods would never be Ready
and no test would run.  The image's /agnhost is a small wrapper: `porter` asked to serve SCTP
only, on a kernel without SCTP, waits (`agnhost pause`) instead of exiting; everything else is the
real agnhost.

Two runs on one lab, two reports: `podnet.yaml`, the suite as published (its SCTP probes fail: no
SCTP packet can exist here), and — on a kernel without SCTP — `podnet-skip-sctp.yaml`, the suite
with scripts/cnp-conformance/skip-sctp.patch (two flags: the SCTP-only tests skipped, so the
suite still calls the profile a failure and names them; each SCTP probe of a mixed-protocol test
logged as skipped with the reason), which shows that everything else passes.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from .images import ImageConfig, ImageError, _cached, cache_dir, layer_from_dir, rootfs_skeleton, write_archive

AGNHOST_IMAGE = "registry.k8s.io/e2e-test-images/agnhost:2.45"      # what the suite's manifests name
SUITE_VERSION = "v0.3.1"
BUILD = Path(__file__).resolve().parents[3] / "scripts" / "cnp-conformance-build.sh"

WRAPPER = """#!/bin/bash
# podnet lab: agnhost built from k8s.io/kubernetes (the lab's release), tagged as the suite names it.
# This kernel may have no SCTP: `porter` serving SCTP only would exit on its listen and the pod would
# never be Ready; then it waits instead (the SCTP tests still run, and fail, in the report).
if [ "$1" = porter ] && [ ! -e /proc/net/sctp ]; then
  others=0; sctp=0
  for v in $(compgen -e); do
    case "$v" in SERVE_SCTP_PORT_*) sctp=1 ;; SERVE_*) others=1 ;; esac
  done
  if [ $sctp = 1 ] && [ $others = 0 ]; then
    echo "podnet lab: no SCTP in this kernel: agnhost porter (SCTP) would exit; waiting instead" >&2
    exec /agnhost.real pause
  fi
fi
exec /agnhost.real "$@"
"""


class ConformanceError(RuntimeError):
    """The suite could not be built or run (the message says which step)."""


def build() -> Path:
    """The cache dir holding conformance.test and agnhost (built once per machine)."""
    p = subprocess.run(["bash", str(BUILD)], capture_output=True, text=True)
    if p.returncode != 0:
        raise ConformanceError(f"scripts/cnp-conformance-build.sh failed: {p.stderr.strip()[-2000:]}")
    return Path(p.stdout.strip().splitlines()[-1])


def agnhost_image(built: Path) -> tuple[str, Path]:
    """(name, OCI tar) of the agnhost image: /agnhost (the wrapper), /agnhost.real, bash-static."""
    bash = Path("/bin/bash-static")
    if not bash.exists():
        raise ImageError("agnhost image: /bin/bash-static missing (apt-get install bash-static)")
    import hashlib
    key = hashlib.sha256((built / "agnhost").read_bytes()[:1 << 20] + WRAPPER.encode() + bash.read_bytes()[:4096]
                         ).hexdigest()[:16]
    out = _cached("agnhost", key)
    if not out.exists():
        with tempfile.TemporaryDirectory(dir=cache_dir()) as tmp:
            root = rootfs_skeleton(Path(tmp))
            shutil.copy(bash, root / "bin" / "bash")
            os.symlink("bash", root / "bin" / "sh")
            shutil.copy(built / "agnhost", root / "agnhost.real")
            (root / "agnhost").write_text(WRAPPER)
            (root / "agnhost").chmod(0o755)
            (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
            (root / "etc" / "group").write_text("root:x:0:\n")
            layer = layer_from_dir(root, Path(tmp) / "layer.tar")
            write_archive(out, AGNHOST_IMAGE, [layer], ImageConfig(["/agnhost"], ["pause"]))
    return AGNHOST_IMAGE, out


SCTP_TESTS = ("CNPAdminTierEgressSCTP", "CNPAdminTierIngressSCTP", "CNPBaselineTierEgressSCTP",
              "CNPBaselineTierIngressSCTP")            # the tests that probe SCTP alone
NO_SCTP = "this kernel has no SCTP (socket(IPPROTO_SCTP): protocol not supported): no SCTP packet can be sent"


def kernel_has_sctp() -> bool:
    """Whether this kernel can open an SCTP socket (the suite's pods run on it)."""
    import socket
    try:
        socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_SCTP).close()
    except OSError:
        return False
    return True


def run_suite(lab: Any, built: Path, report: Path, log: Path, version: str, timeout: float = 3600,
              skip_sctp: str = "") -> int:
    """The ClusterNetworkPolicy profile against the lab; the suite's exit status.  Its report is
    written to `report` (by the suite), its whole output to `log`.  With `skip_sctp` (the reason),
    the patched build runs instead (scripts/cnp-conformance/skip-sctp.patch): the four SCTP-only
    tests are skipped — the suite then reports the profile as a failure naming them, as it must —
    and every SCTP probe of the mixed-protocol tests is logged as skipped with the reason."""
    cp = lab.cp
    binary = built / ("conformance-skip-sctp.test" if skip_sctp else "conformance.test")
    info = "scripts/cnp-conformance.sh on `podnet lab up --kubelet` (2 nodes, this repository)"
    extra: list[str] = []
    if skip_sctp:
        info += (": the suite with scripts/cnp-conformance/skip-sctp.patch, SCTP tests and probes skipped: "
                 + skip_sctp)
        extra = [f"-skip-tests={','.join(SCTP_TESTS)}", f"-skip-sctp-probes={skip_sctp}"]
    argv = ["ip", "netns", "exec", lab.fab, "env", f"KUBECONFIG={cp.admin_kubeconfig()}",
            str(binary), "-test.v", "-test.run", "TestConformanceProfiles",
            "-test.timeout", f"{int(timeout // 60)}m", "-test.count", "1",
            "-conformance-profiles=ClusterNetworkPolicy", "-organization=podnet", "-project=podnet",
            "-url=https://github.com/podnet/podnet", f"-version={version}", "-contact=podnet maintainers",
            f"-additional-info={info}", f"-report-output={report}", *extra]
    t0 = time.monotonic()
    with open(log, "w") as f:
        p = subprocess.run(argv, stdout=f, stderr=subprocess.STDOUT, timeout=timeout + 300)
    with open(log, "a") as f:
        f.write(f"\n# exit {p.returncode} after {time.monotonic() - t0:.0f} s\n")
    return p.returncode
