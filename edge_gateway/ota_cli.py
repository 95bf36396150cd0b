"""`preau ota`: over-the-air updates of a school's boards (docs/ota.md).

    preau ota --config school.toml build [--source RELEASE_DIR] [--force]
    preau ota --config school.toml start --canary ROOM[,ROOM] --url http://GATEWAY:8080 [--version V]
    preau ota --config school.toml promote [--force]
    preau ota --config school.toml rollback [--to V]
    preau ota --config school.toml status

The running gateway reads the rollout file within a second and sends the
update orders itself: to the canary rooms, then to every room after
`promote`; `rollback` sends the previous version the same way."""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from pathlib import Path

from .config import Config, ConfigError
from .ota import OtaError, build_bundle, bundles, load_rollout, ota_dir, promote, rollback, start


def _fw(config: Config) -> dict[str, str | None]:
    """Each room's firmware version as the gateway last saw it (its database)."""
    try:
        db = sqlite3.connect(f"file:{config.db}?mode=ro", uri=True)
        try:
            rows = dict(db.execute("SELECT room, fw FROM rooms").fetchall())
        finally:
            db.close()
    except sqlite3.Error:
        rows = {}
    return {room: rows.get(room) for room in config.rooms}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="preau ota", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="the gateway's school.toml")
    sub = p.add_subparsers(dest="action", required=True)
    b = sub.add_parser("build", help="compile the firmware into a bundle the gateway serves")
    b.add_argument("--source", help="a Préau release's folder (firmware/, protocol/); default: this installation's. "
                                    "The bundle's version is its firmware's VERSION")
    b.add_argument("--force", action="store_true", help="replace a different bundle of the same version")
    s = sub.add_parser("start", help="send a version to the canary rooms")
    s.add_argument("--canary", required=True, help="rooms that get it first, comma-separated")
    s.add_argument("--url", required=True, help="http://host:port where the boards reach this gateway's API")
    s.add_argument("--version", help="the bundle to send (default: the newest built)")
    pr = sub.add_parser("promote", help="send the version to every room once the canaries run it")
    pr.add_argument("--force", action="store_true", help="even if a canary room is not on it yet")
    rb = sub.add_parser("rollback", help="send the previous version to every room")
    rb.add_argument("--to", help="the version to go back to (default: the one before this rollout)")
    sub.add_parser("status", help="the rollout and each room's version")
    args = p.parse_args(argv)
    try:
        config = Config.load(args.config)
    except (ConfigError, OSError) as e:
        print(f"preau ota: {e}", file=sys.stderr)
        return 2
    folder = ota_dir(config.db)
    try:
        if args.action == "build":
            bundle = build_bundle(folder, Path(args.source) if args.source else None, force=args.force)
            print(f"bundle {bundle['version']}: {len(bundle['files'])} files, "
                  f"{sum(f[1] for f in bundle['files'])} bytes, .mpy {bundle['mpy']}, in {folder}")
        elif args.action == "start":
            known = bundles(folder)
            version = args.version or (max(known.values(), key=lambda b: b["built_at"])["version"] if known else "")
            running = [v for v in _fw(config).values() if v]  # the database read once
            previous = max(set(running), key=running.count) if running else None  # what most rooms run
            state = start(folder, list(config.rooms), version, [r for r in args.canary.split(",") if r], args.url,
                          previous)
            print(f"rollout of {state['version']} started: canary {', '.join(state['canary'])}; "
                  f"`preau ota --config {args.config} status` follows it")
        elif args.action == "promote":
            state = promote(folder, _fw(config), args.force)
            print(f"rollout of {state['version']}: every room now")
        elif args.action == "rollback":
            state = rollback(folder, args.to)
            print(f"rollback to {state['version']}: every room not on it gets it")
        else:
            state = load_rollout(folder)
            fws = _fw(config)
            print(json.dumps({"rollout": state, "rooms": fws, "bundles": sorted(bundles(folder))}, indent=1))
    except OtaError as e:
        print(f"preau ota: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
