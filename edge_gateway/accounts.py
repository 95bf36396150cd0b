"""The people who log in to the gateway's pages: accounts with a role
(director, technician, viewer) and an argon2 password hash, in one JSON
file beside the database (`accounts.json`, mode 0600, written atomically
under a lock, like the fleet file). The file, the hashes and the first
account are common/web/accounts.py's, shared with the city; the school's
roles, file name and command are here.

The audit log stores the role and the account id, never the login, which
a school may have chosen as a person's name.

No default password: the first start creates the first director account
with the password in PREAU_ADMIN_PASSWORD, or a generated one shown once
(on the terminal, or in a 0600 file beside the accounts when there is no
terminal, as under systemd)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from typing import TextIO

from common.web import accounts as _common
from common.web.accounts import Account

ROLES = ("director", "technician", "viewer")
ADMIN_PASSWORD_ENV = "PREAU_ADMIN_PASSWORD"
FILE_NAME = "accounts.json"


class AccountStore(_common.AccountStore):
    roles = ROLES
    keeper = "director"


def check_role(role: str) -> str:
    return _common.check_role(role, ROLES)


def default_path(db: str) -> str:
    return os.path.join(os.path.dirname(os.path.abspath(db)), FILE_NAME)


def ensure_first(store: AccountStore, environ: Mapping[str, str], out: TextIO | None = None) -> Account | None:
    """At the gateway's start: with no account at all, create the first
    director (login "direction"), its password PREAU_ADMIN_PASSWORD's or
    generated and shown once. None when accounts exist already."""
    return _common.ensure_first(store, environ, out, login="direction", role="director", env=ADMIN_PASSWORD_ENV,
                                program="preau gateway")


# the command line: preau gateway account add|reset|remove|list --config FILE -------------------


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="preau gateway account",
                                     description="The accounts of the gateway's pages (docs/security.md, \"Accounts\").")
    parser.add_argument("action", choices=("add", "reset", "remove", "list"))
    parser.add_argument("login", nargs="?")
    parser.add_argument("--config", required=True, help="the school's TOML configuration (the accounts file is "
                                                        "beside its database)")
    parser.add_argument("--role", choices=ROLES, help="add: required; reset: change the role too")
    parser.add_argument("--password-stdin", action="store_true",
                        help="read the password from standard input (default: generate one and show it once)")
    args = parser.parse_args(argv)
    from .config import Config, ConfigError

    try:
        config = Config.load(args.config)
    except ConfigError as e:
        print(f"preau gateway account: {e}", file=sys.stderr)
        return 2
    if args.action != "list" and not args.login:
        parser.error(f"{args.action}: a login is needed")
    if args.action == "add" and not args.role:
        parser.error("add: --role is needed")
    return _common.account_command(AccountStore(default_path(config.db)), args.action, args.login, args.role,
                                   args.password_stdin, "preau gateway")
