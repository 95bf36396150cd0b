"""`preau city-ca`: the city's certificate authority, one command each
(docs/city.md, "City PKI and broker").

    preau city-ca --dir CA init [--name NAME]
    preau city-ca --dir CA issue-server --dns mqtt.ville.example [--ip 192.0.2.10]
    preau city-ca --dir CA broker-files --broker-dir /etc/preau/city-broker [--port 8883]
    preau city-ca --dir CA issue-gateway SCHOOL --gateway-id ID --out DIR [--csr FILE] [--replace]
    preau city-ca --dir CA issue-worker NAME --out DIR [--csr FILE]
    preau city-ca --dir CA renew SCHOOL|worker.NAME|server|SERIAL [--out DIR] [--revoke-old]
    preau city-ca --dir CA revoke SCHOOL|worker.NAME|SERIAL [--reason key-compromise]
    preau city-ca --dir CA list
    preau city-ca --dir CA crl

Every change writes the CA's `crl.pem` and the broker's `acl` again; with
`--broker-dir` of a running broker it also sends it SIGHUP (its pid file),
otherwise it says to reload it (`systemctl reload mosquitto`). A new key is
written mode 0600 to `--out` and nowhere else; with `--csr` the key never
leaves its owner. The CA key's passphrase, if any, comes from
$PREAU_CITY_CA_PASSPHRASE, never from the command line."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from typing import Any

from . import broker_files
from .ca import CERT_DAYS, CRL_DAYS, CRL_DUE_DAYS, GATEWAY, REASONS, SERVER, WORKER, CAError, CityCA, Issued, Written

PROG = "preau city-ca"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add `city-ca` to a `preau` parser's subcommands; `run(args)` executes it."""
    parser = subparsers.add_parser("city-ca", help="the city's certificate authority and broker files",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    _fill(parser)
    return parser


def _fill(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dir", required=True, metavar="CA_DIR", help="the CA's directory")
    p.add_argument("--broker-dir", help="the city broker's directory (broker-files): reload it after a change")
    sub = p.add_subparsers(dest="ca_command", required=True, metavar="COMMAND")

    init = sub.add_parser("init", help="create the CA: its key (0600), certificate, index and CRL")
    init.add_argument("--name", default="Préau city CA", help="the CA certificate's name")
    init.add_argument("--days", type=int, default=3650)

    gw = sub.add_parser("issue-gateway", help="a school gateway's certificate (CN = the school)")
    gw.add_argument("school")
    gw.add_argument("--gateway-id", required=True, help="the gateway_id of the school's school.toml")
    gw.add_argument("--replace", action="store_true",
                    help="a new gateway for the school: revoke the old gateway's certificates")
    _issue_options(gw)

    worker = sub.add_parser("issue-worker", help="a city worker's certificate (CN = worker.NAME)")
    worker.add_argument("name")
    _issue_options(worker)

    server = sub.add_parser("issue-server", help="the city broker's certificate (server.pem, server.key)")
    server.add_argument("--dns", action="append", default=[], help="a DNS name clients connect to (repeat)")
    server.add_argument("--ip", action="append", default=[], help="an IP address clients connect to (repeat)")
    server.add_argument("--out", help="where to write server.pem and server.key (default: the CA directory)")
    server.add_argument("--days", type=int, default=CERT_DAYS)

    renew = sub.add_parser("renew", help="a new certificate and key for the same identity")
    renew.add_argument("who", metavar="SCHOOL|worker.NAME|server|SERIAL")
    renew.add_argument("--revoke-old", action="store_true",
                       help="revoke the old certificate now (default: it stays valid until it expires)")
    renew.add_argument("--dns", action="append", default=[], help="server only: new DNS names")
    renew.add_argument("--ip", action="append", default=[], help="server only: new IP addresses")
    _issue_options(renew, out_required=False)

    revoke = sub.add_parser("revoke", help="revoke a certificate, or every valid one of a name")
    revoke.add_argument("who", metavar="SCHOOL|worker.NAME|server|SERIAL")
    revoke.add_argument("--reason", choices=list(REASONS), default="unspecified")

    sub.add_parser("list", help="every certificate issued, with its state")

    crl = sub.add_parser("crl", help="write crl.pem again (before it runs out: the broker then refuses everyone)")
    crl.add_argument("--days", type=int, default=CRL_DAYS)

    files = sub.add_parser("broker-files", help="write the city broker's mosquitto.conf and ACL")
    files.add_argument("--broker-dir", default=argparse.SUPPRESS, help="where the broker runs from (required)")
    files.add_argument("--port", type=int, default=8883)
    files.add_argument("--bind", default="0.0.0.0", help="the address the broker listens on")


def _issue_options(p: argparse.ArgumentParser, out_required: bool = True) -> None:
    p.add_argument("--out", required=out_required,
                   help="where to write NAME.pem, NAME.key (0600) and ca.pem, for the identity to install")
    p.add_argument("--csr", help="a PEM certificate request (EC P-256): the key stays with its owner")
    p.add_argument("--days", type=int, default=CERT_DAYS)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    _fill(parser)
    return run(parser.parse_args(argv))


def run(args: argparse.Namespace) -> int:
    try:
        print(_run(args))
        return 0
    except CAError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # a folder not writable, a disk full: said plainly
        print(f"{PROG}: {e.filename or ''}: {e.strerror or e}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> str:
    command = args.ca_command
    if command == "init":
        ca = CityCA.init(args.dir, name=args.name, days=args.days)
        return (f"city CA created in {ca.dir}: ca.key (0600, keep it off the broker if you can), ca.pem, "
                "index.json, crl.pem\nnext: issue-server, broker-files, then issue-worker and issue-gateway")
    ca = CityCA(args.dir)
    if command == "list":
        return _list(ca)
    if command == "broker-files":
        if not args.broker_dir:
            raise CAError("broker-files: say where the broker runs from (--broker-dir DIR)")
        if not 0 < args.port < 65536:
            raise CAError(f"--port {args.port}: not a TCP port")
        files = broker_files.BrokerFiles(args.broker_dir, ca.dir, port=args.port, host=args.bind)
        try:
            broker_files.write(files, ca)
        except FileNotFoundError as e:
            raise CAError(str(e)) from None
        return (f"wrote {files.conf} (0600) and {broker_files.acl_file(ca)}; start the broker with "
                f"`mosquitto -c {files.conf}`")
    if command == "issue-gateway":
        written = ca.issue_gateway(args.school, args.gateway_id, args.out, days=args.days, csr=args.csr,
                                   replace_gateway=args.replace)
        text = _written(written)
    elif command == "issue-worker":
        text = _written(ca.issue_worker(args.name, args.out, days=args.days, csr=args.csr))
    elif command == "issue-server":
        text = _written(ca.issue_server(args.dns, args.ip, out=args.out, days=args.days))
        text += "\nthe broker reads its certificate when it starts: restart it to use this one"
    elif command == "renew":
        written = ca.renew(args.who, out=args.out, days=args.days, csr=args.csr, revoke_old=args.revoke_old,
                           dns=args.dns, ips=args.ip)
        text = _written(written)
        if not written.revoked and written.entry.replaces:
            old = ca.index().by_serial(written.entry.replaces)
            until = old.not_after if old else "its end"
            text += (f"\nthe old certificate {written.entry.replaces} stays valid until {until}: once the new one "
                     f"is installed, `revoke {written.entry.replaces}`")
    elif command == "revoke":
        done = ca.revoke(args.who, reason=args.reason)
        text = "\n".join(f"revoked {c.serial} ({_who(c)}, {args.reason})" for c in done)
    elif command == "crl":
        until = ca.write_crl(days=args.days)
        text = f"wrote {ca.crl_file}: valid until {until:%Y-%m-%d}; run `crl` again before then"
    else:  # argparse's choices make this unreachable
        raise CAError(f"unknown command {command!r}")
    return text + "\n" + _apply(ca, args.broker_dir)


def _apply(ca: CityCA, broker_dir: str | None) -> str:
    """The broker's ACL and CRL follow every change: write, then reload or say to."""
    broker_files.write_acl(ca)
    if broker_dir:
        files = broker_files.BrokerFiles(broker_dir, ca.dir)
        said = broker_files.reload(files.pid_file)
    else:
        said = "reload the city broker now (`systemctl reload mosquitto`, or SIGHUP)"
    return f"{said}\n{broker_files.RELOAD_NOTE}."


def _who(c: Issued) -> str:
    if c.kind == GATEWAY:
        return f"school {c.school}, gateway {c.gateway}"
    if c.kind == WORKER:
        return c.cn
    return "the city broker"


def _written(w: Written) -> str:
    e = w.entry
    lines = [f"issued {e.serial}: {_who(e)}, valid until {e.not_after}",
             f"  certificate {w.cert_file}"]
    if w.key_file and e.kind == SERVER:
        lines.append(f"  key         {w.key_file} (0600: the broker's user alone reads it)")
    elif w.key_file:
        lines.append(f"  key         {w.key_file} (0600: move it to its owner, keep no copy)")
    lines.append(f"  CA          {w.ca_file}")
    for old in w.revoked:
        lines.append(f"revoked {old.serial} ({_who(old)}, superseded)")
    if e.kind == GATEWAY:
        lines.append("  in the gateway's school.toml: [city_broker] tls = true, ca_file, cert_file, key_file")
    elif e.kind == WORKER:
        lines.append("  for the worker: preau city --ca-file ... --cert-file ... --key-file ...")
    return "\n".join(lines)


def _list(ca: CityCA) -> str:
    now = dt.datetime.now(dt.UTC)
    rows = [("serial", "kind", "name", "gateway", "valid until", "state")]
    for c in ca.index().certificates:
        state = c.status(now) + (f" {c.revoked[:10]} ({c.reason})" if c.revoked else "")
        rows.append((c.serial, c.kind, "server" if c.kind == SERVER else c.cn, c.gateway or "-", c.not_after[:10],
                     state))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    until = ca.crl_next_update()
    if until is None:
        out.append(f"crl.pem cannot be read: run `{PROG} --dir {ca.dir} crl`")
    elif until - now < dt.timedelta(days=CRL_DUE_DAYS):
        out.append(f"crl.pem runs out on {until:%Y-%m-%d}: run `crl` now, or the broker refuses every client then")
    else:
        out.append(f"crl.pem valid until {until:%Y-%m-%d}")
    return "\n".join(out)
