"""A real OpenStack Neutron API server (neutron 29 from PyPI) for the Neutron IPAM's tests and the
lab: no keystone (`auth_strategy = noauth`), no message queue (`transport_url = fake:/`), no agents
(ML2 with no mechanism driver: ports stay unbound, DOWN — their API semantics, fixed IPs, address
pairs, If-Match and quotas are all real).  The measured recipe is ../shared/reference/neutron.md.

  sqlite   one sync gunicorn worker (sqlite serialises requests: more workers → "database is locked")
  mariadb  a private mariadbd (own datadir, socket and port; never the machine's service) and
           several gthread workers: real concurrency, for the race tests

The schema is built from neutron's models and stamped (its alembic migrations ALTER constraints,
which sqlite cannot).  Neutron runs from its own venv (scripts/neutron-setup.sh), in a netns when
one is given (the lab's fabric), else on loopback.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .procs import stop_popen

NEUTRON_VERSION = "29.0.0"          # = scripts/neutron-setup.sh (a unit test keeps them equal)
SETUP = Path(__file__).resolve().parents[3] / "scripts" / "neutron-setup.sh"

NEUTRON_CONF = """[DEFAULT]
core_plugin = ml2
service_plugins =
auth_strategy = noauth
transport_url = fake:/
state_path = {state}
notify_nova_on_port_status_changes = false
notify_nova_on_port_data_changes = false
dhcp_agent_notification = false
enable_traditional_dhcp = false
max_allowed_address_pair = {max_pairs}
use_stderr = false
log_file = {state}/neutron.log
[database]
connection = {db}
[oslo_concurrency]
lock_path = {state}/lock
[quotas]
quota_port = {quota_port}
"""

ML2_CONF = """[ml2]
type_drivers = local,flat,vlan
project_network_types = local
mechanism_drivers =
extension_drivers = port_security
[ml2_type_flat]
flat_networks = physnet1
[ml2_type_vlan]
network_vlan_ranges = physnet1:100:199
"""

# neutron's WSGI entry parses sys.argv itself: gunicorn's own arguments must not reach it
WRAPPER = """import os, sys
os.environ.setdefault('OS_NEUTRON_CONFIG_DIR', {conf!r})
os.environ.setdefault('OS_NEUTRON_CONFIG_FILES', 'neutron.conf;ml2_conf.ini')
sys.argv = ['neutron-api']
from neutron.wsgi.api import application  # noqa: E402,F401
# neutron.policy.init() is lazy and not thread-safe: it publishes the enforcer before loading its
# rules, so a gthread worker's concurrent first requests can be judged by an empty rule set and
# Neutron silently filters every object out of a list (seen: a fresh network listed as 0 matches).
# Loading it here, once per worker before it serves, closes that window.
from neutron import policy  # noqa: E402
policy.init()
"""


class NeutronSetupError(RuntimeError):
    """Neutron is not installed or did not start (the message says where to look)."""


def venv() -> Path:
    """The Neutron venv, installed on first use (~40 s once per machine, then cached)."""
    cache = Path(os.environ.get("PODNET_NEUTRON_CACHE") or Path.home() / ".cache" / "podnet" / "neutron")
    path = cache / NEUTRON_VERSION / "venv"
    if not (path / ".complete").exists():
        p = subprocess.run(["bash", str(SETUP)], capture_output=True, text=True)
        if p.returncode != 0:
            raise NeutronSetupError(f"scripts/neutron-setup.sh failed: {p.stderr.strip()[-2000:]}")
    return path


def _terminate(proc: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM the process's session, `grace` seconds to end cleanly, then SIGKILL; gone on return."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(grace)
    stop_popen(proc)


def _in_netns(netns: str | None, argv: list[str]) -> list[str]:
    return ["ip", "netns", "exec", netns, *argv] if netns else argv


@dataclass
class MariaDB:
    """A private MariaDB server: its own datadir, socket and TCP port on `host` (in `netns`)."""
    work: Path
    host: str = "127.0.0.1"
    port: int = 0
    netns: str | None = None
    proc: subprocess.Popen[bytes] | None = None

    @property
    def socket(self) -> str:
        return str(self.work / "mysqld.sock")

    def start(self) -> None:
        if not shutil.which("mariadbd") and not os.path.exists("/usr/sbin/mariadbd"):
            raise NeutronSetupError("no mariadbd: apt install mariadb-server (scripts/setup.sh does)")
        from .cluster import free_port
        self.port = self.port or free_port()
        data = self.work / "data"
        data.mkdir(parents=True, exist_ok=True)
        p = subprocess.run(["mariadb-install-db", f"--datadir={data}", "--user=root", "--skip-test-db",
                            "--auth-root-authentication-method=socket"], capture_output=True, text=True)
        if p.returncode != 0:
            raise NeutronSetupError(f"mariadb-install-db: {p.stderr.strip()[-1000:]}")
        log = open(self.work / "mariadb.log", "wb")
        self.proc = subprocess.Popen(_in_netns(self.netns, [
            "/usr/sbin/mariadbd", "--no-defaults", f"--datadir={data}", f"--socket={self.socket}",
            f"--port={self.port}", f"--bind-address={self.host}", "--user=root", f"--pid-file={self.work}/mysqld.pid",
            "--innodb-buffer-pool-size=64M", "--max-connections=200", "--skip-log-bin",
            "--innodb-flush-log-at-trx-commit=2"]), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while self._sql("SELECT 1").returncode != 0:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise NeutronSetupError(f"mariadbd did not start: see {self.work}/mariadb.log")
            time.sleep(0.2)
        sql = ("CREATE DATABASE IF NOT EXISTS neutron CHARACTER SET utf8; "
               "CREATE USER IF NOT EXISTS 'neutron'@'%' IDENTIFIED BY 'neutron'; "
               "GRANT ALL ON neutron.* TO 'neutron'@'%'; FLUSH PRIVILEGES;")
        p2 = self._sql(sql)
        if p2.returncode != 0:
            raise NeutronSetupError(f"mariadb: {p2.stderr.decode().strip()}")

    def _sql(self, sql: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(["mariadb", "--no-defaults", f"--socket={self.socket}", "-uroot", "-e", sql],
                              capture_output=True)

    def url(self) -> str:
        return f"mysql+pymysql://neutron:neutron@{self.host}:{self.port}/neutron?charset=utf8"

    def stop(self) -> None:
        if self.proc is not None:
            _terminate(self.proc, 30)
            self.proc = None


@dataclass
class NeutronServer:
    """neutron-server's API under gunicorn, on http://host:port (in `netns` when given)."""
    work: Path | None = None
    host: str = "127.0.0.1"
    port: int = 0
    netns: str | None = None
    db: str = "sqlite"                      # sqlite | mariadb
    max_pairs: int = 10                     # max_allowed_address_pair (Neutron's default)
    quota_port: int = 500                   # the default per-project port quota
    workers: int = 0                        # default: 1 for sqlite, 2×4 threads for mariadb
    proc: subprocess.Popen[bytes] | None = None
    mariadb: MariaDB | None = None
    _tmp: str = field(default="", repr=False)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> NeutronServer:
        env = venv()
        if self.work is None:
            self._tmp = tempfile.mkdtemp(prefix="podnet-neutron-")
            self.work = Path(self._tmp)
        from .cluster import free_port
        self.port = self.port or free_port()
        conf, state = self.work / "etc", self.work / "state"
        conf.mkdir(parents=True, exist_ok=True)
        (state / "lock").mkdir(parents=True, exist_ok=True)
        if self.db == "mariadb":
            self.mariadb = MariaDB(self.work / "mariadb", netns=self.netns)
            self.mariadb.work.mkdir(parents=True, exist_ok=True)
            self.mariadb.start()
            db = self.mariadb.url()
        else:
            db = f"sqlite:///{state}/neutron.db"
        (conf / "neutron.conf").write_text(NEUTRON_CONF.format(state=state, db=db, max_pairs=self.max_pairs,
                                                               quota_port=self.quota_port))
        (conf / "ml2_conf.ini").write_text(ML2_CONF)
        shutil.copy(env / "etc" / "neutron" / "api-paste.ini", conf / "api-paste.ini")
        (conf / "napi.py").write_text(WRAPPER.format(conf=str(conf)))
        self._schema(env, db)
        workers = ["-w", "1"] if self.db == "sqlite" else ["-w", str(self.workers or 2), "-k", "gthread",
                                                             "--threads", "4"]
        log = open(self.work / "gunicorn.log", "wb")
        self.proc = subprocess.Popen(_in_netns(self.netns, [
            str(env / "bin" / "gunicorn"), "--chdir", str(conf), "-b", f"{self.host}:{self.port}", *workers,
            "--timeout", "120", "--graceful-timeout", "5", "napi:application"]),
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "PYTHONWARNINGS": "ignore"})
        self.wait_ready()
        return self

    def _schema(self, env: Path, db: str) -> None:
        """The tables from neutron's models, then `stamp heads` (what neutron's unit tests do)."""
        code = ("import warnings; warnings.simplefilter('ignore'); import sqlalchemy as sa; "
                "from neutron.db.migration.models import head; "
                f"head.get_metadata().create_all(sa.create_engine({db!r}))")
        p = subprocess.run(_in_netns(self.netns, [str(env / "bin" / "python"), "-c", code]), capture_output=True,
                           text=True)
        if p.returncode != 0:
            raise NeutronSetupError(f"neutron schema: {p.stderr.strip()[-2000:]}")

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(OSError, ValueError):
                if self.request("GET", "/v2.0/networks")[0] == 200:
                    return
            if self.proc is None or self.proc.poll() is not None or time.monotonic() > deadline:
                raise NeutronSetupError(f"neutron did not answer on {self.url}: see {self.work}/gunicorn.log "
                                        f"and {self.work}/state/neutron.log")
            time.sleep(0.2)

    def request(self, method: str, path: str, body: dict[str, Any] | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
        """One API call as an admin would make it (from this process: loopback only, or via the
        netns when the server lives in one)."""
        if self.netns:
            return self._request_in_netns(method, path, body, headers)
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json", **(headers or {})})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                raw = r.read()
                return r.status, json.loads(raw) if raw else {}
        except urllib.error.HTTPError as e:
            raw = e.read()
            return e.code, json.loads(raw) if raw else {}

    def _request_in_netns(self, method: str, path: str, body: dict[str, Any] | None,
                          headers: dict[str, str] | None) -> tuple[int, dict[str, Any]]:
        code = ("import json,sys,urllib.request,urllib.error\n"
                "a=json.load(sys.stdin)\n"
                "r=urllib.request.Request(a['u'],data=a['d'].encode() if a['d'] else None,method=a['m'],headers=a['h'])\n"
                "try:\n s=urllib.request.urlopen(r,timeout=30); c=s.status; b=s.read()\n"
                "except urllib.error.HTTPError as e:\n c=e.code; b=e.read()\n"
                "print(json.dumps([c,json.loads(b) if b else {}]))\n")
        arg = {"u": self.url + path, "d": json.dumps(body) if body is not None else "", "m": method,
               "h": {"Content-Type": "application/json", **(headers or {})}}
        p = subprocess.run(["ip", "netns", "exec", str(self.netns), "/usr/bin/python3", "-c", code],
                           input=json.dumps(arg), capture_output=True, text=True, timeout=60)
        if p.returncode != 0:
            raise OSError(p.stderr.strip()[-500:])
        status, doc = json.loads(p.stdout)
        return int(status), dict(doc)

    def create(self, kind: str, **attrs: Any) -> dict[str, Any]:
        """POST /v2.0/<kind>s; the object (raises on anything but 201)."""
        status, doc = self.request("POST", f"/v2.0/{kind}s", {kind: attrs})
        if status != 201:
            raise NeutronSetupError(f"POST {kind}: {status} {doc}")
        return dict(doc[kind])

    def ports(self, **query: str) -> list[dict[str, Any]]:
        from urllib.parse import urlencode
        status, doc = self.request("GET", "/v2.0/ports" + (f"?{urlencode(query)}" if query else ""))
        if status != 200:
            raise NeutronSetupError(f"GET ports: {status} {doc}")
        return list(doc["ports"])

    def stop(self) -> None:
        """Stop gunicorn (and the private MariaDB); the work dir goes if it was ours."""
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGCONT)     # a paused server cannot end
            _terminate(self.proc, 10)
            self.proc = None
        if self.mariadb is not None:
            self.mariadb.stop()
            self.mariadb = None
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = ""

    def pause(self) -> None:
        """SIGSTOP the API (Neutron hung: connections open, no answer)."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGCONT)
