"""The city's certificate authority: the certificates the city broker asks
of every client, and of itself (docs/city.md, "City PKI and broker").

Three kinds of identity, told apart by their certificate's common name,
which Mosquitto turns into the MQTT username (`use_identity_as_username`)
and the client id (`use_username_as_clientid`):

| kind | CN | may (cloud_bridge/broker_files.py) |
| --- | --- | --- |
| gateway | the school (`0341234a`: a-z 0-9 -, no dot) | publish its school's records and gateway state, read its school's acks |
| worker | `worker.NAME` (a dot: never a school) | read every school's records and gateway state, publish acks |
| server | `preau city broker` (a space: never a username) | be the broker (serverAuth only, so never a client) |

Client certificates carry clientAuth only and the broker's serverAuth only,
so neither can stand in for the other. Keys are EC P-256 (OpenSSL, Mosquitto
and paho all take them; Ed25519 is refused by some TLS stacks still).

The CA directory (`ca.key` is the only secret; 0600, like every key this
module writes, from its creation, and every file replaced atomically):

    ca.key      the CA's private key (encrypted when $PREAU_CITY_CA_PASSPHRASE is set)
    ca.pem      the CA certificate: the broker and every client trust it
    crl.pem     the revocation list the broker checks
    index.json  every certificate issued: serial, CN, kind, school, gateway id,
                validity, revocation (no secret: a worker may read it, see register.py)
    certs/      a copy of every certificate issued, by serial
    server.pem, server.key   the broker's own, by default

Each operation holds an exclusive lock on the directory, so two operators
never lose each other's change. Errors are CAError with a sentence to show.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import ipaddress
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, replace

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from common.files import write_atomic, write_private
from protocol.codec import valid_name

from .errors import CityError

PASSPHRASE_ENV = "PREAU_CITY_CA_PASSPHRASE"
GATEWAY, WORKER, SERVER = "gateway", "worker", "server"
KINDS = (GATEWAY, WORKER, SERVER)
WORKER_PREFIX = "worker."
SERVER_CN = "preau city broker"
CA_DAYS = 3650
CERT_DAYS = 730
# The broker refuses every client once its CRL is past its next update
# (OpenSSL: "CRL has expired"), so it is long, and `crl` writes it again.
CRL_DAYS = 365
CRL_DUE_DAYS = 30  # `list` warns this long before the CRL runs out
INDEX_VERSION = 1
REASONS = {
    "unspecified": x509.ReasonFlags.unspecified,
    "key-compromise": x509.ReasonFlags.key_compromise,
    "superseded": x509.ReasonFlags.superseded,
    "cessation-of-operation": x509.ReasonFlags.cessation_of_operation,
}


class CAError(CityError):
    """A CA operation cannot be done; the message says why and what to do."""


@dataclass(frozen=True)
class Issued:
    """One certificate in the index. Times are ISO 8601 UTC; `serial` is hex."""

    serial: str
    cn: str
    kind: str
    school: str | None
    gateway: str | None
    not_before: str
    not_after: str
    revoked: str | None = None
    reason: str | None = None
    replaces: str | None = None  # the serial this one renewed

    def expired(self, now: dt.datetime) -> bool:
        return _time(self.not_after) <= now

    def valid(self, now: dt.datetime) -> bool:
        return self.revoked is None and not self.expired(now)

    def status(self, now: dt.datetime) -> str:
        if self.revoked is not None:
            return "revoked"
        return "expired" if self.expired(now) else "valid"


@dataclass(frozen=True)
class Written:
    """What an issue or renewal wrote for the identity to install."""

    entry: Issued
    cert_file: str
    key_file: str | None  # None when the key stayed with its owner (a CSR)
    ca_file: str
    revoked: tuple[Issued, ...] = ()  # older certificates revoked by this operation


@dataclass(frozen=True)
class Index:
    certificates: tuple[Issued, ...]
    crl_number: int

    def by_serial(self, serial: str) -> Issued | None:
        return next((c for c in self.certificates if c.serial == serial), None)


def worker_cn(name: str) -> str:
    if not valid_name(name):
        raise CAError(f"worker name {name!r}: expected 1 to 32 of a-z 0-9 - (the certificate says {WORKER_PREFIX}NAME)")
    return WORKER_PREFIX + name


def check_school(school: str) -> str:
    if not valid_name(school):
        raise CAError(f"school {school!r}: expected 1 to 32 of a-z 0-9 - (the school's code, in lower case)")
    return school


def check_gateway_id(gateway: str) -> str:
    if not valid_name(gateway):
        raise CAError(f"gateway id {gateway!r}: expected 1 to 32 of a-z 0-9 - (the gateway_id of its school.toml)")
    return gateway


def read_index(path: str) -> Index:
    """The index, checked; CAError naming the file otherwise. Needs no key:
    a worker reads it (register.py)."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise CAError(f"{path}: no such file (is the CA initialised? `preau city-ca --dir DIR init`)") from None
    except OSError as e:
        raise CAError(f"{path}: cannot read ({e.strerror})") from None
    except ValueError as e:
        raise CAError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict) or data.get("v") != INDEX_VERSION:
        raise CAError(f"{path}: not a Préau CA index of version {INDEX_VERSION}")
    items = data.get("certificates")
    crl_number = data.get("crl_number", 0)
    if not isinstance(items, list) or not isinstance(crl_number, int):
        raise CAError(f"{path}: `certificates` must be a list and `crl_number` an integer")
    fields = set(Issued.__dataclass_fields__)
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not {"serial", "cn", "kind", "not_before", "not_after"} <= item.keys() \
                or not item.keys() <= fields or item["kind"] not in KINDS:
            raise CAError(f"{path}: certificates[{i}] is not a certificate entry")
        out.append(Issued(**item))
    return Index(tuple(out), crl_number)


def _time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def _iso(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).replace(microsecond=0).isoformat()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey, passphrase: bytes | None = None) -> bytes:
    encryption = (serialization.BestAvailableEncryption(passphrase) if passphrase
                  else serialization.NoEncryption())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)


def _public_key_of_csr(path: str) -> ec.EllipticCurvePublicKey:
    """Only the CSR's public key is used: the name and extensions are the CA's."""
    try:
        with open(path, "rb") as f:
            csr = x509.load_pem_x509_csr(f.read())
    except OSError as e:
        raise CAError(f"{path}: cannot read the request ({e.strerror})") from None
    except ValueError as e:
        raise CAError(f"{path}: not a PEM certificate request ({e})") from None
    if not csr.is_signature_valid:
        raise CAError(f"{path}: the request's signature does not match its key")
    key = csr.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise CAError(f"{path}: the request's key must be EC P-256 (openssl req -newkey ec "
                      "-pkeyopt ec_paramgen_curve:P-256 ...)")
    return key


class CityCA:
    """A CA directory. `CityCA.init(dir)` creates one, `CityCA(dir)` opens it."""

    def __init__(self, directory: str):
        self.dir = os.path.abspath(directory)
        if not os.path.isfile(self.index_file) or not os.path.isfile(self.cert_file):
            raise CAError(f"{self.dir}: not an initialised city CA (run `preau city-ca --dir {directory} init`)")

    # files -------------------------------------------------------------------

    @property
    def key_file(self) -> str:
        return os.path.join(self.dir, "ca.key")

    @property
    def cert_file(self) -> str:
        return os.path.join(self.dir, "ca.pem")

    @property
    def crl_file(self) -> str:
        return os.path.join(self.dir, "crl.pem")

    @property
    def index_file(self) -> str:
        return os.path.join(self.dir, "index.json")

    @property
    def server_cert_file(self) -> str:
        return os.path.join(self.dir, "server.pem")

    @property
    def server_key_file(self) -> str:
        return os.path.join(self.dir, "server.key")

    @classmethod
    def init(cls, directory: str, name: str = "Préau city CA", days: int = CA_DAYS,
             now: dt.datetime | None = None) -> CityCA:
        """A new CA: its key, its self-signed certificate, an empty index and CRL."""
        directory = os.path.abspath(directory)
        if os.path.exists(os.path.join(directory, "ca.key")) or os.path.exists(os.path.join(directory, "index.json")):
            raise CAError(f"{directory}: a CA is already there; it is never overwritten")
        if not name or len(name) > 64:
            raise CAError("CA name: 1 to 64 characters")
        _check_days(days)
        os.makedirs(directory, mode=0o700, exist_ok=True)
        now = now or _now()
        key = _new_key()
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        passphrase = os.environ.get(PASSPHRASE_ENV)
        write_private(os.path.join(directory, "ca.key"), _key_pem(key, passphrase.encode() if passphrase else None))
        write_atomic(os.path.join(directory, "ca.pem"), cert.public_bytes(serialization.Encoding.PEM))
        ca = cls.__new__(cls)
        ca.dir = directory
        with ca._locked():
            ca._save(Index((), 0))
            ca._write_crl(Index((), 0), key, cert, now, CRL_DAYS)
        return ca

    # reads -------------------------------------------------------------------

    def index(self) -> Index:
        return read_index(self.index_file)

    def find(self, who: str, now: dt.datetime | None = None) -> list[Issued]:
        """Certificates named by a serial (hex), or the valid ones of a CN
        (a school, `worker.NAME`, or `server`)."""
        now = now or _now()
        index = self.index()
        who = who.lower()
        by_serial = index.by_serial(who.removeprefix("0x"))
        if by_serial is not None:
            return [by_serial]
        cn = SERVER_CN if who == SERVER else who
        found = [c for c in index.certificates if c.cn == cn and c.valid(now)]
        if not found:
            known = any(c.cn == cn for c in index.certificates)
            raise CAError(f"{who}: {'no valid certificate' if known else 'no certificate'} with this serial or name "
                          "(see `preau city-ca list`)")
        return found

    def ca_certificate(self) -> x509.Certificate:
        with open(self.cert_file, "rb") as f:
            return x509.load_pem_x509_certificate(f.read())

    # issuing -----------------------------------------------------------------

    def issue_gateway(self, school: str, gateway: str, out: str, days: int = CERT_DAYS, csr: str | None = None,
                      replace_gateway: bool = False, now: dt.datetime | None = None) -> Written:
        """A school's gateway certificate (CN = the school). A school has one
        gateway: a second certificate for another gateway id is refused
        unless `replace_gateway`, which revokes the old ones (superseded)."""
        check_school(school)
        check_gateway_id(gateway)
        now = now or _now()
        with self._locked():
            index = self.index()
            current = [c for c in index.certificates if c.kind == GATEWAY and c.school == school and c.valid(now)]
            if current and not replace_gateway:
                c = current[-1]
                raise CAError(
                    f"school {school} already has certificate {c.serial} for gateway {c.gateway} "
                    f"(until {c.not_after}): `renew {school}` gives the same gateway a new one; "
                    f"`issue-gateway --replace` issues one for a new gateway and revokes the old")
            return self._issue(index, GATEWAY, school, school, gateway, out, school, days, csr, now,
                               revoke=current)

    def issue_worker(self, name: str, out: str, days: int = CERT_DAYS, csr: str | None = None,
                     now: dt.datetime | None = None) -> Written:
        cn = worker_cn(name)
        now = now or _now()
        with self._locked():
            index = self.index()
            if any(c.cn == cn and c.valid(now) for c in index.certificates):
                raise CAError(f"worker {name} already has a valid certificate: `renew {cn}` gives it a new one")
            return self._issue(index, WORKER, cn, None, None, out, cn, days, csr, now)

    def issue_server(self, dns: Sequence[str], ips: Sequence[str], out: str | None = None, days: int = CERT_DAYS,
                     now: dt.datetime | None = None) -> Written:
        """The broker's certificate: the names and addresses clients reach it
        at (their TLS checks the address against these)."""
        sans = self._sans(dns, ips)
        now = now or _now()
        with self._locked():
            return self._issue(self.index(), SERVER, SERVER_CN, None, None, out or self.dir, SERVER, days, None,
                               now, sans=sans)

    def renew(self, who: str, out: str | None = None, days: int = CERT_DAYS, csr: str | None = None,
              revoke_old: bool = False, dns: Sequence[str] = (), ips: Sequence[str] = (),
              now: dt.datetime | None = None) -> Written:
        """A new certificate (and key, unless a CSR) for the same identity.
        The old one stays valid until it expires, so the owner can switch
        without a gap, unless `revoke_old` (superseded)."""
        now = now or _now()
        with self._locked():
            found = self.find(who, now)
            old = max(found, key=lambda c: c.not_after)
            index = self.index()
            sans = None
            if old.kind == SERVER:
                if csr:
                    raise CAError("the broker's certificate is renewed with a new key here, not from a request")
                sans = self._sans(dns, ips) if dns or ips else self._sans_of(old)
            base = {GATEWAY: old.school, WORKER: old.cn, SERVER: SERVER}[old.kind] or old.cn
            if out is None and old.kind != SERVER:
                raise CAError(f"renewing {old.cn}: say where to write its new certificate and key (--out DIR)")
            return self._issue(index, old.kind, old.cn, old.school, old.gateway,
                               out or self.dir, base, days, csr, now,
                               revoke=found if revoke_old else (), sans=sans, replaces=old.serial)

    def revoke(self, who: str, reason: str = "unspecified", now: dt.datetime | None = None) -> list[Issued]:
        """Revoke a certificate (by serial) or every valid one of a name, and
        write the CRL again. What the broker does then: broker_files.RELOAD_NOTE."""
        if reason not in REASONS:
            raise CAError(f"reason {reason!r}: one of {', '.join(REASONS)}")
        now = now or _now()
        with self._locked():
            found = self.find(who, now)
            already = [c for c in found if c.revoked is not None]
            if already and len(found) == 1:
                raise CAError(f"certificate {already[0].serial} was revoked already, on {already[0].revoked}")
            index, done = self._revoked(self.index(), found, reason, now)
            key, cert = self._signer()
            self._save(index)
            self._write_crl(index, key, cert, now, CRL_DAYS)
            return done

    def write_crl(self, days: int = CRL_DAYS, now: dt.datetime | None = None) -> dt.datetime:
        """Write crl.pem again (a new number, the same revocations); its next update."""
        _check_days(days)
        now = now or _now()
        with self._locked():
            key, cert = self._signer()
            return self._write_crl(self.index(), key, cert, now, days)

    def crl_next_update(self) -> dt.datetime | None:
        try:
            with open(self.crl_file, "rb") as f:
                crl = x509.load_pem_x509_crl(f.read())
        except (OSError, ValueError):
            return None
        return crl.next_update_utc

    # inside ------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        fd = os.open(os.path.join(self.dir, ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _signer(self) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        passphrase = os.environ.get(PASSPHRASE_ENV)
        try:
            with open(self.key_file, "rb") as f:
                raw = f.read()
        except OSError as e:
            raise CAError(f"{self.key_file}: cannot read the CA key ({e.strerror})") from None
        try:
            key = serialization.load_pem_private_key(raw, passphrase.encode() if passphrase else None)
        except TypeError:
            raise CAError(f"{self.key_file} is encrypted: set {PASSPHRASE_ENV}" if not passphrase
                          else f"{self.key_file} is not encrypted: unset {PASSPHRASE_ENV}") from None
        except ValueError:
            raise CAError(f"{self.key_file}: cannot load the CA key (wrong {PASSPHRASE_ENV}?)") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise CAError(f"{self.key_file}: not an EC key")
        return key, self.ca_certificate()

    def _save(self, index: Index) -> None:
        data = {"v": INDEX_VERSION, "crl_number": index.crl_number,
                "certificates": [asdict(c) for c in index.certificates]}
        write_atomic(self.index_file, json.dumps(data, indent=1, ensure_ascii=False) + "\n")

    @staticmethod
    def _revoked(index: Index, which: Sequence[Issued], reason: str,
                 now: dt.datetime) -> tuple[Index, list[Issued]]:
        serials = {c.serial for c in which if c.revoked is None}
        done = []
        out = []
        for c in index.certificates:
            if c.serial in serials:
                c = replace(c, revoked=_iso(now), reason=reason)
                done.append(c)
            out.append(c)
        return Index(tuple(out), index.crl_number), done

    def _write_crl(self, index: Index, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate,
                   now: dt.datetime, days: int) -> dt.datetime:
        number = index.crl_number + 1
        next_update = now + dt.timedelta(days=days)
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(cert.subject)
            .last_update(now - dt.timedelta(minutes=5))
            .next_update(next_update)
            .add_extension(x509.CRLNumber(number), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False)
        )
        for c in index.certificates:
            if c.revoked is None:
                continue
            revoked = (
                x509.RevokedCertificateBuilder()
                .serial_number(int(c.serial, 16))
                .revocation_date(_time(c.revoked))
                .add_extension(x509.CRLReason(REASONS.get(c.reason or "unspecified", x509.ReasonFlags.unspecified)),
                               critical=False)
                .build()
            )
            builder = builder.add_revoked_certificate(revoked)
        crl = builder.sign(key, hashes.SHA256())
        write_atomic(self.crl_file, crl.public_bytes(serialization.Encoding.PEM))
        self._save(Index(index.certificates, number))
        return next_update

    @staticmethod
    def _sans(dns: Sequence[str], ips: Sequence[str]) -> list[x509.GeneralName]:
        if not dns and not ips:
            raise CAError("the broker's certificate needs at least one --dns name or --ip address "
                          "(those the gateways and workers connect to)")
        names: list[x509.GeneralName] = []
        for name in dns:
            labels = name.rstrip(".").split(".")
            if not name or len(name) > 253 or not all(
                    label and len(label) <= 63 and label.replace("-", "").isalnum() and label.isascii()
                    for label in labels):
                raise CAError(f"--dns {name!r}: not a DNS name")
            names.append(x509.DNSName(name.rstrip(".").lower()))
        for text in ips:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(text)))
            except ValueError:
                raise CAError(f"--ip {text!r}: not an IP address") from None
        return names

    def _sans_of(self, entry: Issued) -> list[x509.GeneralName]:
        try:
            with open(os.path.join(self.dir, "certs", entry.serial + ".pem"), "rb") as f:
                cert = x509.load_pem_x509_certificate(f.read())
            return list(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
        except (OSError, ValueError, x509.ExtensionNotFound):
            raise CAError(f"certificate {entry.serial}: its names cannot be read back; renew with --dns/--ip") from None

    def _issue(self, index: Index, kind: str, cn: str, school: str | None, gateway: str | None, out: str,
               base: str, days: int, csr: str | None, now: dt.datetime, *, revoke: Sequence[Issued] = (),
               sans: list[x509.GeneralName] | None = None, replaces: str | None = None) -> Written:
        _check_days(days)
        ca_key, ca_cert = self._signer()
        ca_until = ca_cert.not_valid_after_utc
        not_after = min(now + dt.timedelta(days=days), ca_until)
        if not_after <= now:
            raise CAError(f"the CA certificate expired on {_iso(ca_until)}: a new CA is needed")
        if csr is not None:
            public_key, key = _public_key_of_csr(csr), None
        else:
            key = _new_key()
            public_key = key.public_key()
        usage = ExtendedKeyUsageOID.SERVER_AUTH if kind == SERVER else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(ca_cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        try:
            cert.verify_directly_issued_by(ca_cert)
        except (ValueError, TypeError, InvalidSignature) as e:  # a bug or a broken CA directory, never shipped
            raise CAError(f"the certificate just issued does not verify against ca.pem: {e}") from None
        pem = cert.public_bytes(serialization.Encoding.PEM)
        serial = f"{cert.serial_number:x}"
        entry = Issued(serial=serial, cn=cn, kind=kind, school=school, gateway=gateway, not_before=_iso(now),
                       not_after=_iso(not_after), replaces=replaces)
        # The key first: a certificate on disk without its key is useless,
        # a key without its certificate harmless.
        os.makedirs(out, exist_ok=True)
        key_file = None
        if key is not None:
            key_file = os.path.join(out, base + ".key")
            write_private(key_file, _key_pem(key))
        cert_file = os.path.join(out, base + ".pem")
        write_atomic(cert_file, pem)
        ca_file = os.path.join(out, "ca.pem")
        if os.path.abspath(ca_file) != self.cert_file:
            write_atomic(ca_file, ca_cert.public_bytes(serialization.Encoding.PEM))
        write_atomic(os.path.join(self.dir, "certs", serial + ".pem"), pem)
        index = Index((*index.certificates, entry), index.crl_number)
        done: list[Issued] = []
        if revoke:
            index, done = self._revoked(index, revoke, "superseded", now)
        self._save(index)
        if done:
            self._write_crl(index, ca_key, ca_cert, now, CRL_DAYS)
        return Written(entry, cert_file, key_file, ca_file, tuple(done))


def _check_days(days: int) -> None:
    if not isinstance(days, int) or not 1 <= days <= 36500:
        raise CAError(f"days: {days!r} is not 1 to 36500")
