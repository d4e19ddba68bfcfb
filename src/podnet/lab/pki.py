"""The lab cluster's PKI, made in Python (`cryptography`): a CA, the API server's serving
certificate, the service-account signing key, and client certificates — the admin
(system:masters), the controller manager, the scheduler, and one per node (system:node:<name> in
system:nodes, what the Node authorizer and NodeRestriction key on).  ECDSA P-256 keys: fast to
make, accepted by every Kubernetes component.  Everything is written under one directory, keys
0600."""
from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALID_DAYS = 30


@dataclass(frozen=True)
class Pair:
    cert: str       # paths
    key: str


def _name(cn: str, orgs: tuple[str, ...] = ()) -> x509.Name:
    return x509.Name([*(x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write(path: str, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


class Pki:
    """A CA under `root`; `issue` makes a key and a certificate signed by it."""

    def __init__(self, root: str) -> None:
        self.root = root
        os.makedirs(root, mode=0o700, exist_ok=True)
        self.ca = Pair(os.path.join(root, "ca.crt"), os.path.join(root, "ca.key"))
        if not os.path.exists(self.ca.cert):
            self._make_ca()
        with open(self.ca.key, "rb") as f:
            key = serialization.load_pem_private_key(f.read(), None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        self._ca_key = key
        with open(self.ca.cert, "rb") as f:
            self._ca_cert = x509.load_pem_x509_certificate(f.read())

    def _make_ca(self) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        cert = (x509.CertificateBuilder().subject_name(_name("podnet-lab-ca")).issuer_name(_name("podnet-lab-ca"))
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                             content_commitment=False, key_encipherment=False, data_encipherment=False,
                                             key_agreement=False, encipher_only=False, decipher_only=False),
                               critical=True)
                .sign(key, hashes.SHA256()))
        _write(self.ca.key, _key_pem(key), 0o600)
        _write(self.ca.cert, cert.public_bytes(serialization.Encoding.PEM), 0o644)

    def issue(self, name: str, cn: str, orgs: tuple[str, ...] = (), server: bool = False,
              dns: tuple[str, ...] = (), ips: tuple[str, ...] = ()) -> Pair:
        """A key and a certificate (client, or server with these SANs) named `name`.crt/.key."""
        pair = Pair(os.path.join(self.root, f"{name}.crt"), os.path.join(self.root, f"{name}.key"))
        if os.path.exists(pair.cert):
            return pair
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        b = (x509.CertificateBuilder().subject_name(_name(cn, orgs)).issuer_name(self._ca_cert.subject)
             .public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(minutes=5))
             .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
             .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
             .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server
                                                   else ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False))
        if dns or ips:
            b = b.add_extension(x509.SubjectAlternativeName(
                [*(x509.DNSName(d) for d in dns), *(x509.IPAddress(ipaddress.ip_address(i)) for i in ips)]),
                critical=False)
        cert = b.sign(self._ca_key, hashes.SHA256())
        _write(pair.key, _key_pem(key), 0o600)
        _write(pair.cert, cert.public_bytes(serialization.Encoding.PEM), 0o644)
        return pair

    def service_account_key(self) -> Pair:
        """The key pair service-account tokens are signed with (cert = the public key, PEM)."""
        pair = Pair(os.path.join(self.root, "sa.pub"), os.path.join(self.root, "sa.key"))
        if not os.path.exists(pair.key):
            key = ec.generate_private_key(ec.SECP256R1())
            _write(pair.key, _key_pem(key), 0o600)
            _write(pair.cert, key.public_key().public_bytes(serialization.Encoding.PEM,
                                                            serialization.PublicFormat.SubjectPublicKeyInfo), 0o644)
        return pair
