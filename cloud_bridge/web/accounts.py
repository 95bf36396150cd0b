"""The city's accounts: the people who log in to the supervision pages,
with a role (supervisor, technician, viewer) and an argon2 hash, in one
JSON file beside the city's database (`city-accounts.json`, mode 0600;
common/web/accounts.py keeps it, as the school gateway's).

No default password: the first start creates the first supervisor (login
"supervision") with the password in PREAU_CITY_ADMIN_PASSWORD, or a
generated one shown once (on the terminal, or in a 0600 file beside the
accounts when there is none). `preau city account add|reset|remove|list`
manages them while the city runs."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from typing import TextIO

from common.web import accounts as _common
from common.web.accounts import Account

ROLES = ("supervisor", "technician", "viewer")
ADMIN_PASSWORD_ENV = "PREAU_CITY_ADMIN_PASSWORD"
ACCOUNTS_ENV = "PREAU_CITY_ACCOUNTS"
FILE_NAME = "city-accounts.json"
FIRST_LOGIN = "supervision"


class CityAccountStore(_common.AccountStore):
    roles = ROLES
    keeper = "supervisor"


def default_path(db_path: str, environ: Mapping[str, str] | None = None) -> str:
    """PREAU_CITY_ACCOUNTS, or city-accounts.json beside the SQLite file
    (`--db`; with PostgreSQL, beside where `--db` points all the same)."""
    environ = os.environ if environ is None else environ
    given = environ.get(ACCOUNTS_ENV)
    if given:
        return given
    return os.path.join(os.path.dirname(os.path.abspath(db_path)), FILE_NAME)


def ensure_first(store: CityAccountStore, environ: Mapping[str, str], out: TextIO | None = None) -> Account | None:
    return _common.ensure_first(store, environ, out, login=FIRST_LOGIN, role="supervisor", env=ADMIN_PASSWORD_ENV,
                                program="preau city")


def main(argv: list[str]) -> int:
    """`preau city account add|reset|remove|list [LOGIN] [--db PATH | --accounts FILE]`."""
    parser = argparse.ArgumentParser(prog="preau city account",
                                     description="The accounts of the city's supervision pages "
                                                 "(docs/security.md, \"City accounts\").")
    parser.add_argument("action", choices=("add", "reset", "remove", "list"))
    parser.add_argument("login", nargs="?")
    parser.add_argument("--db", default="preau-city.db", metavar="PATH",
                        help="the city's SQLite file, as given to `preau city --db` (the accounts are beside it)")
    parser.add_argument("--accounts", metavar="FILE", help=f"the accounts file itself (default: ${ACCOUNTS_ENV}, "
                                                           f"or {FILE_NAME} beside --db)")
    parser.add_argument("--role", choices=ROLES, help="add: required; reset: change the role too")
    parser.add_argument("--password-stdin", action="store_true",
                        help="read the password from standard input (default: generate one and show it once)")
    args = parser.parse_args(argv)
    if args.action != "list" and not args.login:
        parser.error(f"{args.action}: a login is needed")
    if args.action == "add" and not args.role:
        parser.error("add: --role is needed")
    store = CityAccountStore(args.accounts or default_path(args.db))
    return _common.account_command(store, args.action, args.login, args.role, args.password_stdin, "preau city")
