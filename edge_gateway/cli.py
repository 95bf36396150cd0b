"""`preau`: the one command-line entry point.

    preau demo      a simulated school: brokers, classrooms, gateway, city
    preau gateway   the school gateway service
    preau city      the city supervision service
"""

from __future__ import annotations

import argparse
import logging
import sys


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="preau", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["demo", "gateway", "city"])
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in ("demo", "gateway", "city"):
        parser.error(f"unknown command {command!r}")
    if command == "demo":
        from edge_gateway.demo import main as run
    elif command == "gateway":
        from edge_gateway.service import main as run
    else:
        from cloud_bridge.service import main as run
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
