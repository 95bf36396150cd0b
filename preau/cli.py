"""`preau`: the one command-line entry point.

    preau demo      a simulated school: brokers, classrooms, gateway, city
    preau gateway   the school gateway service (--config school.toml)
    preau gateway install|backup|clock --config school.toml ...
                    its systemd units and files, a database copy, its clock (docs/install.md)
    preau gateway account add|reset|remove|list [LOGIN] --config school.toml [--role ROLE]
                    the accounts of the gateway's pages (docs/security.md, "Accounts")
    preau city      the city supervision service
    preau city account add|reset|remove|list [LOGIN] [--db PATH | --accounts FILE] [--role ROLE]
                    the accounts of the city's pages (docs/security.md, "City accounts")
    preau provision --config school.toml init|add|list|revoke|rekey|replace ...
                    the boards' identities and the school broker's files
    preau city-ca --dir CA_DIR init|issue-gateway|issue-worker|issue-server|broker-files|renew|revoke|list|crl ...
                    the city's certificate authority and its broker's files
    preau policy explain --config school.toml [--week DATE] [--lang fr|en] [--room ROOM]
                    the week's plan for each room, and why (no broker needed)
    preau board --config school.toml identify|end|reboot ROOM
                    a technician's command to a board, through the gateway's API
    preau flash --config school.toml --credentials FILE ROOM [--port P] [--board PROFILE] [--image FILE]
                    put a classroom board in service: MicroPython, firmware, configuration, birth
    preau ota --config school.toml build|start|promote|rollback|status ...
                    over-the-air updates of the boards, canary rooms first (docs/ota.md)
    preau bench [--board PROFILE] [--console PORT] --projector-port PORT [--reset-gpio N] ...
                    check a freshly flashed board on a Raspberry Pi's bench: a pass/fail sheet
"""

from __future__ import annotations

import argparse
import logging
import sys


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="preau", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["demo", "gateway", "city", "policy", "provision", "city-ca", "flash", "board", "bench", "ota"])
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in ("demo", "gateway", "city", "policy", "provision", "city-ca", "flash", "board", "bench", "ota"):
        parser.error(f"unknown command {command!r}")
    if command == "policy":
        if not rest or rest[0] != "explain":
            parser.error("usage: preau policy explain --config FILE [--week DATE] [--lang fr|en] [--room ROOM]")
        command, rest = "policy explain", rest[1:]
    if command == "demo":
        from devkit.demo import main as run
    elif command == "gateway" and rest[:1] == ["account"]:
        from edge_gateway.accounts import main as run

        rest = rest[1:]
    elif command == "gateway":
        from edge_gateway.main import main as run
    elif command == "city" and rest[:1] == ["account"]:
        from cloud_bridge.web.accounts import main as run

        rest = rest[1:]
    elif command == "city":
        from cloud_bridge.service import main as run
    elif command == "provision":
        from edge_gateway.provision import main as run
    elif command == "city-ca":
        from cloud_bridge.ca_cli import main as run
    elif command == "board":
        from edge_gateway.board_cli import main as run
    elif command == "flash":
        from edge_gateway.flash.cli import main as run
    elif command == "bench":
        from edge_gateway.benchcheck.cli import main as run
    elif command == "ota":
        from edge_gateway.ota_cli import main as run
    else:
        from edge_gateway.policy.explain import main as run
    try:
        return run(rest)
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # the one top-level catch: a clear line, an exit code
        logging.getLogger("preau").debug("fatal", exc_info=True)
        print(f"preau {command}: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
