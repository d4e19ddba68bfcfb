"""Container images for the lab's real nodes, made here without any registry: OCI image-layout
tars (https://github.com/opencontainers/image-spec/blob/main/image-layout.md) that
`ctr images import` loads into each node's containerd.

  pause    the pod sandbox's process (`pnprobe pause`: sleeps until SIGTERM)
  probe    busybox-static + pnprobe: HTTP and UDP on ports 80 and 81 answering the hostname, and
           `pnprobe probe tcp|udp HOST PORT` as the client the tests run inside pods
  podnet   what deploy/Containerfile describes: Debian 12 with the packages it names (a root
           filesystem made by mmdebstrap, cached by its package list — the same packages apt
           would install in the Containerfile's build), and a layer holding /opt/podnet-venv with
           the wheel built from this checkout and its pinned dependencies

pnprobe is Go (pnprobe/main.go, standard library only), built once per source hash with the Go
toolchain the Kubernetes build uses.  Everything built is cached outside the checkout:
${PODNET_IMAGE_CACHE:-~/.cache/podnet/images}.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
PAUSE = "localhost/podnet-lab/pause:3.10"
PROBE = "localhost/podnet-lab/probe:1"
PODNET_REPO = "localhost/podnet-lab/podnet"
DEBIAN_SUITE = "bookworm"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
# = deploy/Containerfile's apt-get install line (a unit test keeps them equal)
PODNET_PACKAGES = ("python3", "python3-venv", "python3-nftables", "nftables", "iproute2", "kmod",
                   "wireguard-go", "bird2", "libstdc++6")   # libstdc++6: grpcio (the etcd datastore)


class ImageError(RuntimeError):
    """An image could not be built (the message says which step and why)."""


def cache_dir() -> Path:
    d = Path(os.environ.get("PODNET_IMAGE_CACHE") or Path.home() / ".cache" / "podnet" / "images")
    d.mkdir(parents=True, exist_ok=True)
    return d


@dataclass
class Layer:
    """One layer's uncompressed tar, on disk (digest = its diff_id)."""
    path: Path
    digest: str = ""
    size: int = 0

    def __post_init__(self) -> None:
        if not self.digest:
            h = hashlib.sha256()
            with open(self.path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
            self.digest, self.size = "sha256:" + h.hexdigest(), self.path.stat().st_size


@dataclass
class ImageConfig:
    entrypoint: list[str]
    cmd: list[str] = field(default_factory=list)
    env: list[str] = field(default_factory=lambda: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"])


def layer_from_dir(root: Path, out: Path, skip: tuple[str, ...] = ()) -> Layer:
    """A layer of everything under `root` (owners and modes kept; `skip`: top-level paths whose
    contents stay out, e.g. dev, proc)."""
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        for entry in sorted(os.listdir(root)):
            if entry in skip:
                tar.add(root / entry, arcname=entry, recursive=False)
                continue
            tar.add(root / entry, arcname=entry)
    return Layer(out)


def write_archive(out: Path, name: str, layers: list[Layer], config: ImageConfig) -> Path:
    """The OCI image-layout tar of one image named `name` (repo:tag), ready for `ctr images import`."""
    cfg = {"architecture": "amd64", "os": "linux",
           "config": {"Entrypoint": config.entrypoint, "Cmd": config.cmd or None, "Env": config.env,
                      "WorkingDir": "/"},
           "rootfs": {"type": "layers", "diff_ids": [layer.digest for layer in layers]},
           "history": [{"created_by": "podnet lab images"} for _ in layers]}
    cfg_raw = json.dumps(cfg, sort_keys=True).encode()
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": _descriptor("application/vnd.oci.image.config.v1+json", cfg_raw),
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer.digest,
                            "size": layer.size} for layer in layers]}
    man_raw = json.dumps(manifest, sort_keys=True).encode()
    tag = name.rsplit(":", 1)[1]
    index = {"schemaVersion": 2, "manifests": [{
        **_descriptor("application/vnd.oci.image.manifest.v1+json", man_raw),
        "annotations": {"io.containerd.image.name": name, "org.opencontainers.image.ref.name": tag}}]}
    tmp = out.with_suffix(".part")
    with tarfile.open(tmp, "w") as tar:
        _add_bytes(tar, "oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode())
        _add_bytes(tar, "index.json", json.dumps(index).encode())
        for raw in (cfg_raw, man_raw):
            _add_bytes(tar, "blobs/sha256/" + hashlib.sha256(raw).hexdigest(), raw)
        for layer in layers:
            tar.add(layer.path, arcname="blobs/sha256/" + layer.digest.split(":", 1)[1])
    tmp.rename(out)
    return out


def _descriptor(media_type: str, raw: bytes) -> dict[str, object]:
    return {"mediaType": media_type, "digest": "sha256:" + hashlib.sha256(raw).hexdigest(), "size": len(raw)}


def _add_bytes(tar: tarfile.TarFile, name: str, raw: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(raw), 0o644
    tar.addfile(info, io.BytesIO(raw))


# ------------------------------------------------------------------ pnprobe, pause, probe
def pnprobe_binary() -> Path:
    """The pnprobe static binary, built once per source hash."""
    src = HERE / "pnprobe"
    key = hashlib.sha256(b"".join((src / f).read_bytes() for f in ("go.mod", "main.go"))).hexdigest()[:16]
    out = cache_dir() / f"pnprobe-{key}"
    if out.exists():
        return out
    if not shutil.which("go"):
        raise ImageError("pnprobe: no 'go' on PATH (the same toolchain scripts/k8s-build.sh uses)")
    env = {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-mod=mod"}
    p = subprocess.run(["go", "build", "-trimpath", "-ldflags", "-s -w", "-o", str(out) + ".part", "."],
                       cwd=src, env=env, capture_output=True, text=True)
    if p.returncode:
        raise ImageError(f"pnprobe: go build failed: {p.stderr.strip()}")
    os.rename(str(out) + ".part", out)
    return out


def rootfs_skeleton(tmp: Path) -> Path:
    """An empty root for a small static image: the directories a container runtime mounts onto."""
    root = tmp / "root"
    for d in ("bin", "etc", "tmp", "proc", "sys", "dev"):
        (root / d).mkdir(parents=True)
    return root


def _cached(name: str, key: str) -> Path:
    return cache_dir() / f"{name}-{key}.oci.tar"


def pause_image() -> tuple[str, Path]:
    """(image name, OCI tar) of the sandbox image: /pause only."""
    binary = pnprobe_binary()
    out = _cached("pause", binary.name)
    if not out.exists():
        with tempfile.TemporaryDirectory(dir=cache_dir()) as tmp:
            root = Path(tmp) / "root"
            root.mkdir()
            shutil.copy(binary, root / "pause")
            layer = layer_from_dir(root, Path(tmp) / "layer.tar")
            write_archive(out, PAUSE, [layer], ImageConfig(["/pause", "pause"]))
    return PAUSE, out


def probe_image() -> tuple[str, Path]:
    """(image name, OCI tar) of the test server: busybox-static (every applet) and pnprobe serve."""
    binary = pnprobe_binary()
    busybox = Path("/bin/busybox")
    if not busybox.exists():
        raise ImageError("probe image: /bin/busybox missing (apt-get install busybox-static)")
    key = hashlib.sha256(binary.name.encode() + busybox.read_bytes()).hexdigest()[:16]
    out = _cached("probe", key)
    if not out.exists():
        with tempfile.TemporaryDirectory(dir=cache_dir()) as tmp:
            root = rootfs_skeleton(Path(tmp))
            shutil.copy(busybox, root / "bin" / "busybox")
            applets = subprocess.run([str(busybox), "--list"], capture_output=True, text=True).stdout.split()
            for applet in applets:
                if applet != "busybox":
                    os.symlink("busybox", root / "bin" / applet)
            shutil.copy(binary, root / "bin" / "pnprobe")
            (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
            (root / "etc" / "group").write_text("root:x:0:\n")
            layer = layer_from_dir(root, Path(tmp) / "layer.tar")
            write_archive(out, PROBE, [layer], ImageConfig(["/bin/pnprobe"], ["serve"]))
    return PROBE, out


# ------------------------------------------------------------------ podnet
def debian_base() -> tuple[Path, Layer]:
    """Debian 12 with PODNET_PACKAGES (mmdebstrap, variant essential: no apt in the image), as a
    root directory (to build the next layer in) and its layer tar; cached by the package list."""
    key = hashlib.sha256(" ".join((DEBIAN_SUITE, DEBIAN_MIRROR, *PODNET_PACKAGES)).encode()).hexdigest()[:16]
    base = cache_dir() / f"debian-{key}"
    layer_path = base / "layer.tar"
    if not layer_path.exists():
        if not shutil.which("mmdebstrap"):
            raise ImageError("podnet image: mmdebstrap missing (apt-get install mmdebstrap)")
        shutil.rmtree(base, ignore_errors=True)
        base.mkdir()
        p = subprocess.run(["mmdebstrap", "--variant=essential", "--include=" + ",".join(PODNET_PACKAGES),
                            "--dpkgopt=path-exclude=/usr/share/doc/*", "--dpkgopt=path-exclude=/usr/share/man/*",
                            "--dpkgopt=path-exclude=/usr/share/locale/*", DEBIAN_SUITE, str(base / "rootfs"),
                            DEBIAN_MIRROR], capture_output=True, text=True)
        if p.returncode:
            shutil.rmtree(base, ignore_errors=True)
            raise ImageError(f"podnet image: mmdebstrap failed: {p.stderr.strip()[-2000:]}")
        layer_from_dir(base / "rootfs", base / "layer.part", skip=("dev", "proc", "sys", "run", "tmp"))
        os.rename(base / "layer.part", layer_path)
    return base / "rootfs", Layer(layer_path)


def _wheels(source: Path, out: Path) -> None:
    """The wheel of this checkout and of each pinned dependency (the venv's pip, from PyPI or its cache)."""
    import sys
    p = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--disable-pip-version-check", "-w", str(out),
                        str(source)], capture_output=True, text=True)
    if p.returncode:
        raise ImageError(f"podnet image: pip wheel failed: {p.stderr.strip()[-2000:]}")


def source_key(source: Path) -> str:
    """A hash of what goes into the podnet layer: pyproject, README and every file under src/."""
    h = hashlib.sha256()
    for rel in ("pyproject.toml", "README.md"):
        h.update((source / rel).read_bytes())
    for dirpath, dirnames, files in os.walk(source / "src"):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__" and not d.endswith(".egg-info"))
        for f in sorted(files):
            if not f.endswith(".pyc"):
                path = Path(dirpath) / f
                h.update(str(path.relative_to(source)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:12]


def podnet_image(source: Path, tag: str = "") -> tuple[str, Path]:
    """(image name, OCI tar) of podnet built from the checkout at `source`: the Debian base, then
    `python3 -m venv /opt/podnet-venv` + `pip install` of the wheels run inside that root (an
    overlay mount, so the layer is exactly what the step added), as the Containerfile's RUN does.
    tag: default a hash of the source."""
    key = source_key(source)
    name = f"{PODNET_REPO}:{tag or key}"
    rootfs, base_layer = debian_base()
    out = _cached("podnet", f"{key}-{tag or 'src'}")
    if out.exists():
        return name, out
    with tempfile.TemporaryDirectory(dir=cache_dir()) as tmp:
        t = Path(tmp)
        for d in ("upper", "work", "merged", "wheels"):
            (t / d).mkdir()
        _wheels(source, t / "wheels")
        script = (f"set -e; mount -t overlay overlay -o lowerdir={rootfs},upperdir={t}/upper,workdir={t}/work "
                  f"{t}/merged; mkdir -p {t}/merged/tmp/wheels; mount --bind {t}/wheels {t}/merged/tmp/wheels; "
                  f"mount -t proc proc {t}/merged/proc; "
                  f"chroot {t}/merged python3 -m venv /opt/podnet-venv; "
                  f"chroot {t}/merged /opt/podnet-venv/bin/pip install -q --no-cache-dir --no-index "
                  f"--disable-pip-version-check --find-links /tmp/wheels podnet; "
                  f"ln -sf /opt/podnet-venv/bin/podnet {t}/merged/usr/local/bin/podnet; "
                  f"umount {t}/merged/proc {t}/merged/tmp/wheels {t}/merged")
        p = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                           capture_output=True, text=True)
        if p.returncode:
            raise ImageError(f"podnet image: installing the wheels failed: {p.stderr.strip()[-2000:]}")
        upper = t / "upper"
        shutil.rmtree(upper / "tmp" / "wheels", ignore_errors=True)
        layer = layer_from_dir(upper, t / "podnet.tar", skip=("tmp", "proc"))
        write_archive(out, name, [base_layer, layer], ImageConfig(["podnet"], ["version"]))
    prune("podnet-*.oci.tar", keep=4)
    return name, out


def prune(pattern: str, keep: int) -> None:
    """Each source change makes a new ~300 MB podnet image: keep only the newest few."""
    old = sorted(cache_dir().glob(pattern), key=lambda p: p.stat().st_mtime, reverse=True)[keep:]
    for path in old:
        path.unlink(missing_ok=True)
