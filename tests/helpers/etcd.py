"""A throwaway etcd (Debian's etcd-server) for tests: loopback or a given netns, random
ports, a temp data dir; always stopped and removed."""
from __future__ import annotations

import shutil
import subprocess
import tempfile
import time

ETCD = shutil.which("etcd") or "/usr/bin/etcd"


def free_port() -> int:
    from podnet.lab import free_port as lab_free_port
    return lab_free_port()


class Etcd:
    def __init__(self, ip: str = "127.0.0.1", netns: str = "", name: str = "pnt",
                 client_port: int = 0, peer_port: int = 0, cluster: str = "", state: str = "new",
                 data_dir: str = "", tls_dir: str = "") -> None:
        self.ip, self.netns, self.name = ip, netns, name
        self.client_port = client_port or free_port()
        self.peer_port = peer_port or free_port()
        self.data = data_dir or tempfile.mkdtemp(prefix="pnt-etcd-")
        self.tls_dir = tls_dir
        self.url = f"{'https' if tls_dir else 'http'}://{ip}:{self.client_port}"
        peer = f"http://{ip}:{self.peer_port}"
        argv = [ETCD, "--name", name, "--data-dir", self.data, "--listen-client-urls", self.url,
                "--advertise-client-urls", self.url, "--listen-peer-urls", peer,
                "--initial-advertise-peer-urls", peer, "--initial-cluster", cluster or f"{name}={peer}",
                "--initial-cluster-state", state, "--listen-metrics-urls", ""]
        if tls_dir:
            argv += ["--cert-file", f"{tls_dir}/server.pem", "--key-file", f"{tls_dir}/server.key",
                     "--trusted-ca-file", f"{tls_dir}/ca.pem", "--client-cert-auth"]
        if netns:
            argv = ["ip", "netns", "exec", netns, *argv]
        self.log = open(f"{self.data}.log", "w")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT)

    def wait_healthy(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"etcd exited: {open(self.log.name).read()[-2000:]}")
            try:
                argv = ["ip", "netns", "exec", self.netns] if self.netns else []
                code = ("import ssl, urllib.request\n"
                        "_c = None\n"
                        + (f"_c = ssl.create_default_context(cafile='{self.tls_dir}/ca.pem')\n"
                           f"_c.load_cert_chain('{self.tls_dir}/client.pem', '{self.tls_dir}/client.key')\n"
                           if self.tls_dir else "")
                        + f"print(urllib.request.urlopen('{self.url}/health', timeout=1, context=_c).read().decode())")
                out = subprocess.run([*argv, "/usr/bin/python3", "-c", code], capture_output=True, text=True,
                                     timeout=5)
                if '"health":"true"' in out.stdout.replace(" ", ""):
                    return
            except subprocess.TimeoutExpired:
                pass
            time.sleep(0.1)
        raise RuntimeError("etcd did not become healthy")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def remove(self) -> None:
        self.stop()
        self.log.close()
        shutil.rmtree(self.data, ignore_errors=True)


def have_etcd() -> bool:
    return shutil.which("etcd") is not None or __import__("os").path.exists("/usr/bin/etcd")




def make_tls(d: str) -> str:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, with openssl, in `d`."""
    def ssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=d)
    ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=podnet-test-ca")
    for name, ext in (("server", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth"),
                      ("client", "extendedKeyUsage=clientAuth")):
        with open(f"{d}/{name}.ext", "w") as f:
            f.write(ext + "\n")
        ssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
            "-subj", f"/CN=podnet-{name}")
        ssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext")
    return d
