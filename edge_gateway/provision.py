"""`preau provision`: the school's board identities, one command each.

    preau provision --config school.toml init                write the broker's files (no board yet)
    preau provision --config school.toml add ROOM [--out F]  a board for a room: its credentials, once
    preau provision --config school.toml list                every board, active and revoked
    preau provision --config school.toml revoke ROOM|USER    refused from now on
    preau provision --config school.toml rekey ROOM|USER     new password and key, same board
    preau provision --config school.toml replace ROOM        a new board for the room; the old one revoked
    preau provision --config school.toml rekey-gateway       a new broker password for the gateway

Each change updates the fleet file (edge_gateway/fleet.py), writes the
school broker's files again (edge_gateway/broker_files.py) and reloads the
broker, which disconnects a revoked board at once; the running gateway reads
the fleet again within a second. A board's password and key are printed
once (or written, mode 0600, to `--out` for the flasher) and kept nowhere
in clear; secrets are never taken from the command line."""

from __future__ import annotations

import argparse
import json
import sys
import time

from . import broker_files
from .config import Config, ConfigError
from .fleet import Credentials, Fleet, FleetError, editing, load, write_private


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="preau provision", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="the school's TOML configuration file")
    sub = p.add_subparsers(dest="action", required=True)
    sub.add_parser("init", help="create the gateway's identity and write the broker's files")
    for name, what in (("add", "a board for a room"), ("rekey", "new credentials for a board"),
                       ("replace", "a new board for a room, revoking the old one")):
        a = sub.add_parser(name, help=what)
        a.add_argument("who", metavar="ROOM" if name != "rekey" else "ROOM|USERNAME")
        a.add_argument("--out", help="write the board's credentials (JSON, mode 0600) here instead of printing them")
        a.add_argument("--broker-host", help="the address boards reach the school broker at, for --out")
    r = sub.add_parser("revoke", help="refuse a board from now on")
    r.add_argument("who", metavar="ROOM|USERNAME")
    sub.add_parser("list", help="every board, active and revoked")
    sub.add_parser("rekey-gateway", help="a new broker password for the gateway (it follows by itself)")
    return p


def _need_files(config: Config) -> tuple[str, broker_files.BrokerFiles]:
    if config.fleet_file is None or config.broker is None:
        raise ConfigError(f"{config.source}: the database is in memory: set `fleet` and `[broker] dir`")
    return config.fleet_file, config.broker


def _show(creds: Credentials, config: Config, out: str | None, broker_host: str | None) -> str:
    body = creds.board_config()
    if broker_host:
        assert config.broker is not None
        body |= {"broker": broker_host, "port": config.broker.listen_port}
    if out:
        write_private(out, json.dumps(body, indent=1) + "\n")
        return f"credentials for {creds.username} written to {out} (mode 0600): flash them with the board"
    return ("board %s for room %s. Its config.json keys (shown once, not kept in clear):\n%s"
            % (creds.username, creds.room, json.dumps(body, indent=1)))


def _apply(config: Config, fleet: Fleet) -> str:
    _, files = _need_files(config)
    broker_files.write(files, fleet)
    return broker_files.reload(files)


def _list(fleet: Fleet) -> str:
    def when(t: float | None) -> str:
        return time.strftime("%Y-%m-%d %H:%M", time.localtime(t)) if t else "-"

    rows = [("ROOM", "USERNAME", "STATE", "CREATED", "REKEYED", "REVOKED")]
    rows += [(b.room, b.username, b.state, when(b.created), when(b.rekeyed_at), when(b.revoked_at))
             for b in sorted(fleet.boards, key=lambda b: (b.room, b.created))]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.append(f"{len(fleet.active())} active board(s); gateway identity {fleet.gateway_username}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        config = Config.load(args.config)
        path, _ = _need_files(config)
        if args.action == "list":
            print(_list(load(path)))
            return 0
        with editing(path, config.school, config.gateway_id) as fleet:
            if args.action in ("add", "replace") and args.who not in config.rooms:
                raise FleetError(f"room {args.who!r} is not in {config.source} (rooms: {', '.join(config.rooms)})")
            message = ""
            if args.action == "add":
                message = _show(fleet.add(args.who), config, args.out, args.broker_host)
            elif args.action == "rekey":
                message = _show(fleet.rekey(args.who), config, args.out, args.broker_host)
            elif args.action == "replace":
                old, creds = fleet.replace_board(args.who)
                message = f"{old.username} revoked.\n" + _show(creds, config, args.out, args.broker_host)
            elif args.action == "revoke":
                old = fleet.revoke(args.who)
                message = f"{old.username} (room {old.room}) revoked."
            elif args.action == "rekey-gateway":
                fleet.rekey_gateway()
                message = f"new broker password for {fleet.gateway_username} (kept in the fleet file only)."
        if message:
            print(message)
        print(_apply(config, fleet))
        return 0
    except (ConfigError, FleetError) as e:
        print(f"preau provision: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"preau provision: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
