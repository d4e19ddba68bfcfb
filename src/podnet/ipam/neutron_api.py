"""Neutron's REST API over the standard library (http.client): the launcher path must stay light
(an SDK costs 0.3–0.6 s of imports per exec; this costs nothing beyond what the launcher loads).

Authentication: none (a Neutron in `noauth`, as the tests run it: no X-Project-Id is sent, so
requests run as admin), or keystone v3 — a token from POST /v3/auth/tokens with the password or an
application credential, the `network` endpoint from its catalog, kept until shortly before it
expires and renewed once on a 401.  One `NeutronAPI` per (endpoint, credentials) per process: in
the agent the token and the connection's warm state last across pods.

Every failure is typed: `NeutronUnavailable` (connection refused, timeout, 5xx — transient, CNI
code 11) or `NeutronError` with Neutron's own `type` (IpAddressAlreadyAllocated,
IpAddressGenerationFailure, AllowedAddressPairExhausted, RevisionNumberConstraintFailed …)."""
from __future__ import annotations

import http.client
import json
import threading
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any

from .errors import IpamError, StoreUnavailable

TOKEN_MARGIN = 120.0          # renew a keystone token this many seconds before it expires


class NeutronUnavailable(StoreUnavailable):
    """Neutron (or keystone) did not answer, or answered 5xx: try again later."""


class NeutronError(IpamError):
    """Neutron refused the request: `status`, Neutron's error `type` and its message."""

    def __init__(self, status: int, kind: str, message: str, what: str) -> None:
        super().__init__(f"{what}: Neutron answered {status} {kind}: {message}".rstrip(": "))
        self.status, self.kind, self.message = status, kind, message


@dataclass(frozen=True)
class Credentials:
    """keystone v3: a user's password, or an application credential."""
    auth_url: str
    username: str = ""
    password: str = ""
    user_domain: str = "Default"
    project: str = ""
    project_domain: str = "Default"
    app_cred_id: str = ""
    app_cred_secret: str = ""
    region: str = ""
    interface: str = "public"

    def body(self) -> dict[str, Any]:
        if self.app_cred_id:
            return {"auth": {"identity": {"methods": ["application_credential"], "application_credential": {
                "id": self.app_cred_id, "secret": self.app_cred_secret}}}}
        return {"auth": {"identity": {"methods": ["password"], "password": {"user": {
            "name": self.username, "password": self.password, "domain": {"name": self.user_domain}}}},
            "scope": {"project": {"name": self.project, "domain": {"name": self.project_domain}}}}}


def _split(url: str) -> tuple[str, str, int, str]:
    u = urllib.parse.urlsplit(url)
    if u.scheme not in ("http", "https") or not u.hostname:
        raise ValueError(f"{url!r} is not an http(s) URL")
    return u.scheme, u.hostname, u.port or (443 if u.scheme == "https" else 80), u.path.rstrip("/")


def _call(url: str, method: str, path: str, body: Any, headers: dict[str, str], timeout: float,
          what: str) -> tuple[int, dict[str, str], bytes]:
    scheme, host, port, base = _split(url)
    cls = http.client.HTTPSConnection if scheme == "https" else http.client.HTTPConnection
    conn = cls(host, port, timeout=timeout)
    data = json.dumps(body).encode() if body is not None else None
    try:
        conn.request(method, base + path, body=data, headers={"Content-Type": "application/json",
                                                               "Accept": "application/json", **headers})
        resp = conn.getresponse()
        raw = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, raw
    except (TimeoutError, OSError, http.client.HTTPException) as e:
        raise NeutronUnavailable(f"{what}: Neutron at {url} did not answer ({type(e).__name__}: {e})") from None
    finally:
        conn.close()


class NeutronAPI:
    def __init__(self, endpoint: str = "", credentials: Credentials | None = None, timeout: float = 10.0) -> None:
        if not endpoint and credentials is None:
            raise ValueError("a Neutron endpoint or keystone credentials are required")
        if endpoint:
            _split(endpoint)
        self.endpoint = endpoint.rstrip("/")
        self.credentials = credentials
        self.timeout = timeout
        self._token = ""
        self._expires = 0.0
        self._lock = threading.Lock()
        self.token_requests = 0            # how many times keystone was asked (the tests count them)

    def _auth(self, renew: bool = False) -> dict[str, str]:
        if self.credentials is None:
            return {}
        with self._lock:
            if renew or not self._token or time.time() > self._expires - TOKEN_MARGIN:
                self._login()
            return {"X-Auth-Token": self._token}

    def _login(self) -> None:
        c = self.credentials
        assert c is not None
        status, headers, raw = _call(c.auth_url, "POST", "/auth/tokens", c.body(), {}, self.timeout, "keystone")
        self.token_requests += 1
        if status >= 500:
            raise NeutronUnavailable(f"keystone at {c.auth_url} answered {status}")
        if status != 201 or "x-subject-token" not in headers:
            raise NeutronError(status, "Unauthorized", raw.decode(errors="replace")[:300], "keystone")
        doc = json.loads(raw)["token"]
        self._token = headers["x-subject-token"]
        self._expires = _parse_time(doc.get("expires_at", "")) or time.time() + 3600
        if not self.endpoint:
            self.endpoint = _network_endpoint(doc.get("catalog") or [], c)

    def request(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
                what: str = "") -> tuple[int, dict[str, Any]]:
        """(status, JSON body) of one call; 5xx and no answer raise NeutronUnavailable."""
        what = what or f"{method} {path.split('?')[0]}"
        auth = self._auth()
        status, _, raw = _call(self.endpoint, method, path, body, {**auth, **(headers or {})}, self.timeout, what)
        if status == 401 and self.credentials is not None:          # the token was revoked or expired early
            auth = self._auth(renew=True)
            status, _, raw = _call(self.endpoint, method, path, body, {**auth, **(headers or {})}, self.timeout, what)
        if status >= 500:
            raise NeutronUnavailable(f"{what}: Neutron answered {status}: {raw.decode(errors='replace')[:300]}")
        try:
            doc = json.loads(raw) if raw else {}
        except ValueError:
            doc = {"NeutronError": {"type": "BadResponse", "message": raw.decode(errors="replace")[:300]}}
        return status, doc if isinstance(doc, dict) else {}

    def ok(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
           what: str = "", expect: tuple[int, ...] = (200, 201, 204)) -> dict[str, Any]:
        """The JSON body of a call that must succeed; NeutronError with Neutron's type otherwise."""
        status, doc = self.request(method, path, body, headers, what)
        if status not in expect:
            err = doc.get("NeutronError") or {}
            raise NeutronError(status, str(err.get("type", "")), str(err.get("message", doc)),
                               what or f"{method} {path.split('?')[0]}")
        return doc

    def list(self, kind: str, query: dict[str, str] | list[tuple[str, str]] | None = None) -> list[dict[str, Any]]:
        """GET /v2.0/<kind>s with filters (a list of pairs repeats a key: fixed_ips=…&fixed_ips=…)."""
        qs = urllib.parse.urlencode(query or {})
        doc = self.ok("GET", f"/v2.0/{kind}s" + (f"?{qs}" if qs else ""), what=f"list {kind}s")
        return list(doc.get(f"{kind}s", []))


def _parse_time(text: str) -> float:
    from datetime import datetime
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def _network_endpoint(catalog: list[dict[str, Any]], c: Credentials) -> str:
    for svc in catalog:
        if svc.get("type") != "network":
            continue
        for ep in svc.get("endpoints", []):
            if ep.get("interface") == c.interface and (not c.region or ep.get("region_id", ep.get("region")) == c.region):
                return str(ep["url"]).rstrip("/")
    raise NeutronError(0, "EndpointNotFound", f"no {c.interface} network endpoint"
                                              f"{' in region ' + c.region if c.region else ''} in keystone's catalog",
                       "keystone")
