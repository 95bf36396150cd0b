"""The city CA (cloud_bridge/ca.py), its command (cloud_bridge/ca_cli.py),
the broker's generated files (cloud_bridge/broker_files.py) and the
worker's TLS settings: files and modes, names, renewal and revocation, the
CRL, clear errors. No broker here: tests/test_city_security.py runs them."""

import argparse
import datetime as dt
import json
import os
import stat

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from cloud_bridge import broker_files, ca_cli
from cloud_bridge.ca import PASSPHRASE_ENV, SERVER_CN, CAError, CityCA
from cloud_bridge.errors import CitySettingsError
from cloud_bridge.register import GatewayRegister, gateways_of
from cloud_bridge.service import main as city_main
from cloud_bridge.settings import CitySettings

SCHOOL = "0341234a"


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def load_cert(path):
    with open(path, "rb") as f:
        return x509.load_pem_x509_certificate(f.read())


def load_crl(path):
    with open(path, "rb") as f:
        return x509.load_pem_x509_crl(f.read())


@pytest.fixture
def ca(tmp_path):
    return CityCA.init(str(tmp_path / "ca"))


def test_init_writes_the_key_0600_and_never_overwrites(ca, tmp_path):
    assert mode(ca.key_file) == 0o600 and mode(ca.dir) == 0o700
    assert sorted(os.listdir(ca.dir)) == [".lock", "ca.key", "ca.pem", "crl.pem", "index.json"]
    cert = load_cert(ca.cert_file)
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert list(load_crl(ca.crl_file)) == []
    with pytest.raises(CAError, match="already there"):
        CityCA.init(ca.dir)
    with pytest.raises(CAError, match="not an initialised city CA"):
        CityCA(str(tmp_path / "nothing"))


def test_a_gateway_certificate_is_its_school_and_client_only(ca, tmp_path):
    w = ca.issue_gateway(SCHOOL, "gw-0341234a", str(tmp_path / "gw"))
    assert mode(w.key_file) == 0o600 and os.path.basename(w.cert_file) == f"{SCHOOL}.pem"
    cert = load_cert(w.cert_file)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == SCHOOL
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.CLIENT_AUTH]
    cert.verify_directly_issued_by(load_cert(ca.cert_file))
    with open(w.key_file, "rb") as f:
        key = serialization.load_pem_private_key(f.read(), None)
    assert key.public_key() == cert.public_key()
    with open(w.ca_file, "rb") as f, open(ca.cert_file, "rb") as g:
        assert f.read() == g.read()
    [entry] = ca.index().certificates
    assert (entry.serial, entry.cn, entry.kind, entry.school, entry.gateway, entry.revoked) == (
        f"{cert.serial_number:x}", SCHOOL, "gateway", SCHOOL, "gw-0341234a", None)
    assert gateways_of(ca.index_file) == {SCHOOL: frozenset({"gw-0341234a"})}


def test_names_that_could_be_mistaken_are_refused(ca, tmp_path):
    out = str(tmp_path / "x")
    for school in ("UPPER", "a.b", "", "x" * 33, "a/b", "+"):
        with pytest.raises(CAError, match="school"):
            ca.issue_gateway(school, "gw-1", out)
    with pytest.raises(CAError, match="gateway id"):
        ca.issue_gateway(SCHOOL, "gw 1", out)
    with pytest.raises(CAError, match="worker name"):
        ca.issue_worker("a.b", out)
    with pytest.raises(CAError, match="--dns"):
        ca.issue_server(["not a name"], [])
    with pytest.raises(CAError, match="--ip"):
        ca.issue_server([], ["300.1.1.1"])
    with pytest.raises(CAError, match="at least one"):
        ca.issue_server([], [])
    assert ca.index().certificates == ()


def test_worker_and_server_names_can_never_be_a_school(ca, tmp_path):
    worker = ca.issue_worker("1", str(tmp_path / "w"))
    assert worker.entry.cn == "worker.1" and "." in worker.entry.cn  # a school name has no dot
    server = ca.issue_server(["mqtt.ville.example"], ["192.0.2.10"])
    assert server.cert_file == ca.server_cert_file and mode(ca.server_key_file) == 0o600
    cert = load_cert(server.cert_file)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == SERVER_CN
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["mqtt.ville.example"]
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["192.0.2.10"]
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.SERVER_AUTH]
    with pytest.raises(CAError, match="already has a valid certificate"):
        ca.issue_worker("1", str(tmp_path / "w"))


def test_one_gateway_per_school_renewal_and_replacement(ca, tmp_path):
    first = ca.issue_gateway(SCHOOL, "gw-a", str(tmp_path / "a"))
    with pytest.raises(CAError, match="already has certificate"):
        ca.issue_gateway(SCHOOL, "gw-b", str(tmp_path / "b"))
    # Renewal: same identity, new key; the old one stays valid unless asked.
    renewed = ca.renew(SCHOOL, out=str(tmp_path / "a2"))
    assert (renewed.entry.cn, renewed.entry.gateway, renewed.entry.replaces) == (SCHOOL, "gw-a", first.entry.serial)
    assert renewed.revoked == ()
    assert load_cert(renewed.cert_file).public_key() != load_cert(first.cert_file).public_key()
    assert len(ca.find(SCHOOL)) == 2
    again = ca.renew(SCHOOL, out=str(tmp_path / "a3"), revoke_old=True)
    assert sorted(c.serial for c in again.revoked) == sorted([first.entry.serial, renewed.entry.serial])
    assert {r.serial_number for r in load_crl(ca.crl_file)} == {
        int(first.entry.serial, 16), int(renewed.entry.serial, 16)}
    # A new gateway for the school: the old gateway's certificates revoked.
    replaced = ca.issue_gateway(SCHOOL, "gw-b", str(tmp_path / "b"), replace_gateway=True)
    assert [c.serial for c in replaced.revoked] == [again.entry.serial]
    assert gateways_of(ca.index_file) == {SCHOOL: frozenset({"gw-b"})}
    with pytest.raises(CAError, match="--out"):
        ca.renew(SCHOOL)


def test_revocation_writes_the_crl_and_is_clear_about_what_it_finds(ca, tmp_path):
    w = ca.issue_gateway(SCHOOL, "gw-a", str(tmp_path / "a"))
    number = load_crl(ca.crl_file).extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    [done] = ca.revoke(SCHOOL, reason="key-compromise")
    assert (done.serial, done.reason) == (w.entry.serial, "key-compromise")
    crl = load_crl(ca.crl_file)
    [revoked] = list(crl)
    assert revoked.serial_number == int(w.entry.serial, 16)
    assert revoked.extensions.get_extension_for_class(x509.CRLReason).value.reason == x509.ReasonFlags.key_compromise
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == number + 1
    assert crl.is_signature_valid(load_cert(ca.cert_file).public_key())  # type: ignore[arg-type]
    with pytest.raises(CAError, match="revoked already"):
        ca.revoke(w.entry.serial)
    with pytest.raises(CAError, match="no valid certificate"):
        ca.revoke(SCHOOL)
    with pytest.raises(CAError, match="no certificate"):
        ca.revoke("0679999z")
    with pytest.raises(CAError, match="reason"):
        ca.revoke(SCHOOL, reason="bored")
    assert gateways_of(ca.index_file) == {}


def test_a_csr_keeps_the_key_with_its_owner(ca, tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "worker.anything")]))
           .sign(key, SHA256()))
    path = tmp_path / "gw.csr"
    path.write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    w = ca.issue_gateway(SCHOOL, "gw-a", str(tmp_path / "out"), csr=str(path))
    assert w.key_file is None and not os.path.exists(tmp_path / "out" / f"{SCHOOL}.key")
    cert = load_cert(w.cert_file)
    assert cert.public_key() == key.public_key()
    # The request's name is ignored: the CA names the certificate.
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == SCHOOL
    path.write_text("not a request")
    with pytest.raises(CAError, match="not a PEM certificate request"):
        ca.issue_worker("2", str(tmp_path / "out"), csr=str(path))


def test_an_encrypted_ca_key_needs_its_passphrase_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(PASSPHRASE_ENV, "correct horse battery staple")
    ca = CityCA.init(str(tmp_path / "ca"))
    with open(ca.key_file, "rb") as f:
        assert b"ENCRYPTED" in f.read()
    ca.issue_worker("1", str(tmp_path / "w"))
    monkeypatch.delenv(PASSPHRASE_ENV)
    with pytest.raises(CAError, match=f"encrypted: set {PASSPHRASE_ENV}"):
        ca.issue_worker("2", str(tmp_path / "w"))
    monkeypatch.setenv(PASSPHRASE_ENV, "wrong")
    with pytest.raises(CAError, match="wrong"):
        ca.issue_worker("2", str(tmp_path / "w"))


def test_the_crl_is_written_again_with_a_later_end(ca):
    before = ca.crl_next_update()
    later = ca.write_crl(days=400, now=dt.datetime.now(dt.UTC) + dt.timedelta(days=1))
    assert before is not None and later > before
    assert ca.crl_next_update() == later.replace(microsecond=0)


def test_a_broken_index_is_said_plainly(ca, tmp_path):
    with open(ca.index_file, "w") as f:
        f.write("{")
    with pytest.raises(CAError, match="not valid JSON"):
        ca.index()
    with open(ca.index_file, "w") as f:
        json.dump({"v": 1, "certificates": [{"serial": "1"}]}, f)
    with pytest.raises(CAError, match=r"certificates\[0\]"):
        ca.index()


def test_the_register_follows_the_index_and_keeps_the_last_good_one(ca, tmp_path, caplog):
    ca.issue_gateway(SCHOOL, "gw-a", str(tmp_path / "a"))
    register = GatewayRegister(ca.index_file)
    assert register.gateways(SCHOOL) == {"gw-a"} and register.gateways("0679999z") == frozenset()
    ca.issue_gateway("0679999z", "gw-b", str(tmp_path / "b"))
    assert register.gateways("0679999z") == {"gw-b"}
    with open(ca.index_file, "w") as f:
        f.write("garbage")
    assert register.gateways(SCHOOL) == {"gw-a"}
    assert any("keeping the last good one" in r.getMessage() for r in caplog.records)


# ------------------------------------------------------------ broker files

def test_the_broker_files_lock_everything_down(ca, tmp_path):
    ca.issue_server(["localhost"], ["127.0.0.1"])
    ca.issue_worker("1", str(tmp_path / "w"))
    ca.issue_worker("2", str(tmp_path / "w2"))
    ca.revoke("worker.2")
    files = broker_files.BrokerFiles(str(tmp_path / "broker"), ca.dir, port=8883)
    broker_files.write(files, ca)
    assert mode(files.conf) == 0o600
    with open(files.conf) as f:
        conf = f.read().splitlines()
    for line in ("allow_anonymous false", "require_certificate true", "use_identity_as_username true",
                 "use_username_as_clientid true", f"crlfile {ca.crl_file}", f"cafile {ca.cert_file}",
                 "persistence true", "listener 8883 0.0.0.0", "tls_version tlsv1.2"):
        assert line in conf, line
    # Listener options after the listener line (Mosquitto 2.0.11 ignores them above it).
    assert conf.index("use_username_as_clientid true") > conf.index("listener 8883 0.0.0.0")
    assert not any(line.startswith(("password_file", "listener 1883")) for line in conf)
    with open(broker_files.acl_file(ca)) as f:
        acl = [line for line in f.read().splitlines() if line and not line.startswith("#")]
    assert acl == [
        "pattern write preau/v1/city/%u/records",
        "pattern write preau/v1/city/%u/gateway",
        "pattern read preau/v1/city/%u/ack",
        "pattern read preau/v1/city/%u/gaps",
        "user worker.1",
        "topic read preau/v1/city/+/records",
        "topic read preau/v1/city/+/gateway",
        "topic write preau/v1/city/+/ack",
        "topic write preau/v1/city/+/gaps",
    ]


def test_broker_files_need_the_servers_certificate(ca, tmp_path):
    with pytest.raises(FileNotFoundError, match="issue-server"):
        broker_files.write(broker_files.BrokerFiles(str(tmp_path / "broker"), ca.dir), ca)


def test_reload_without_a_pid_file_says_what_to_do(tmp_path):
    assert "systemctl reload mosquitto" in broker_files.reload(str(tmp_path / "mosquitto.pid"))


# ------------------------------------------------------------ the command

def run_cli(*argv):
    """Through argparse as `preau` will wire it: add_parser on its subcommands, then run."""
    parser = argparse.ArgumentParser(prog="preau")
    ca_cli.add_parser(parser.add_subparsers(dest="command"))
    return ca_cli.run(parser.parse_args(["city-ca", *argv]))


def test_the_command_runs_a_city_ca(tmp_path, capsys):
    d = str(tmp_path / "ca")
    assert run_cli("--dir", d, "init") == 0
    assert run_cli("--dir", d, "issue-server", "--dns", "localhost", "--ip", "127.0.0.1") == 0
    assert run_cli("--dir", d, "broker-files", "--broker-dir", str(tmp_path / "broker"), "--port", "8883") == 0
    assert run_cli("--dir", d, "issue-worker", "1", "--out", str(tmp_path / "w")) == 0
    assert run_cli("--dir", d, "issue-gateway", SCHOOL, "--gateway-id", "gw-a", "--out", str(tmp_path / "gw")) == 0
    out = capsys.readouterr().out
    assert "[city_broker] tls = true" in out and "reload the city broker" in out
    assert "SIGHUP Mosquitto reads the ACL and the CRL again" in out
    assert mode(tmp_path / "gw" / f"{SCHOOL}.key") == 0o600
    assert run_cli("--dir", d, "renew", SCHOOL, "--out", str(tmp_path / "gw2")) == 0
    assert "stays valid until" in capsys.readouterr().out
    assert run_cli("--dir", d, "revoke", SCHOOL, "--reason", "superseded") == 0
    revoked = [line for line in capsys.readouterr().out.splitlines() if line.startswith("revoked ")]
    assert len(revoked) == 2 and all(f"school {SCHOOL}" in line for line in revoked)
    assert run_cli("--dir", d, "crl") == 0
    assert "crl.pem: valid until" in capsys.readouterr().out
    assert run_cli("--dir", d, "list") == 0
    listing = capsys.readouterr().out
    assert listing.count("  revoked 20") == 2 and "worker.1" in listing and "crl.pem valid until" in listing
    assert run_cli("--dir", d, "issue-gateway", "Bad.School", "--gateway-id", "gw", "--out", str(tmp_path)) == 1
    assert "school 'Bad.School'" in capsys.readouterr().err
    assert run_cli("--dir", str(tmp_path / "none"), "list") == 1
    assert "not an initialised city CA" in capsys.readouterr().err
    assert ca_cli.main(["--dir", d, "list"]) == 0


# ---------------------------------------------------- the worker's settings

def worker(ca, tmp_path, **values):
    w = ca.issue_worker("1", str(tmp_path / "w"))
    return w, CitySettings(token="t" * 20, db_path=str(tmp_path / "city.db"), ca_file=ca.cert_file,
                           cert_file=w.cert_file, key_file=w.key_file, **values)


def test_worker_tls_settings_are_checked_at_start(ca, tmp_path):
    w, settings = worker(ca, tmp_path, gateways=ca.index_file)
    settings.check()
    broker = settings.broker
    assert (broker.tls, broker.ca_file, broker.cert_file, broker.key_file) == (
        True, ca.cert_file, w.cert_file, w.key_file)
    other = ca.issue_gateway(SCHOOL, "gw-a", str(tmp_path / "gw"))
    cases = [
        ({"key_file": None}, "without its key"),
        ({"cert_file": None}, "without its certificate"),
        ({"ca_file": str(tmp_path / "missing.pem")}, "No such file"),
        ({"key_file": other.key_file}, "do not belong together"),
        ({"cert_file": ca.crl_file}, "not a PEM certificate"),
        ({"gateways": str(tmp_path / "missing.json")}, "gateway register"),
    ]
    for change, message in cases:
        with pytest.raises(CitySettingsError, match=message):
            CitySettings(**(vars(settings) | change)).check()
    os.chmod(w.key_file, 0o644)
    with pytest.raises(CitySettingsError, match="chmod 600"):
        settings.check()


def test_an_expired_worker_certificate_is_said_at_start(ca, tmp_path):
    old = ca.issue_worker("old", str(tmp_path / "w"), days=1, now=dt.datetime.now(dt.UTC) - dt.timedelta(days=3))
    settings = CitySettings(token="t" * 20, cert_file=old.cert_file, key_file=old.key_file, ca_file=ca.cert_file)
    with pytest.raises(CitySettingsError, match="expired"):
        settings.check()


def test_the_city_command_takes_paths_never_secrets(ca, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PREAU_CITY_TOKEN", "t" * 24)
    w = ca.issue_worker("1", str(tmp_path / "w"))
    assert city_main(["--db", str(tmp_path / "c.db"), "--cert-file", w.cert_file]) == 2
    assert "without its key" in capsys.readouterr().err
    garbage = tmp_path / "garbage.key"
    garbage.write_text("not a key")
    garbage.chmod(0o600)
    assert city_main(["--db", str(tmp_path / "c.db"), "--cert-file", w.cert_file, "--key-file", str(garbage)]) == 2
    assert "not a PEM private key" in capsys.readouterr().err
