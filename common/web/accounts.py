"""The people who log in to a service's pages: accounts with a role and an
argon2 password hash, in one JSON file (mode 0600, written atomically
under a lock). Each service names its roles and the role whose last
account cannot be removed (edge_gateway/accounts.py: director;
cloud_bridge/web/accounts.py: supervisor).

A file rather than a database table: the accounts are edited by the
service's `account` command while the service runs, by another process,
and the service's database has one writer. The running service reads the
file again when it changes, so a reset password or a removed account ends
that account's sessions at its next request.

An account has a generated id (`u-0001`, never reused) and a login. Logs
store the role and the id, never the login, which may have been chosen as
a person's name: removing the account is then the end of the link between
the log and a person.

No default password: `ensure_first` creates the first account with the
password of an environment variable, or a generated one shown once (on the
terminal, or in a 0600 file beside the accounts when there is no terminal,
as under systemd)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import secrets
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, replace
from typing import TextIO

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from common.files import write_private

FIRST_PASSWORD_FILE = "accounts.first-password"  # the school gateway's (beside accounts.json)


def first_password_path(accounts_path: str) -> str:
    """Where a service with no terminal writes its first account's password
    (0600): beside its accounts file, named after it, so that the school's
    and the city's never meet in one folder (accounts.first-password,
    city-accounts.first-password)."""
    return os.path.splitext(os.path.abspath(accounts_path))[0] + ".first-password"
LOGIN_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,39}$"
PASSWORD_MIN = 12
PASSWORD_MAX = 256  # argon2 takes any length; a bound keeps a log-in request small
_LOGIN = re.compile(LOGIN_PATTERN)


class AccountError(ValueError):
    pass


@dataclass(frozen=True)
class Account:
    id: str  # u-0001: what the logs name
    login: str
    role: str
    hash: str  # argon2id, PHC string
    created: float
    changed: float  # the password's last change: a session from before it is over

    def public(self) -> dict:
        return {"id": self.id, "login": self.login, "role": self.role, "created": self.created,
                "changed": self.changed}


def check_login(login: str) -> str:
    if not _LOGIN.match(login or ""):
        raise AccountError("login: 1 to 40 of a-z, 0-9, '.', '_', '-' (a role or a function, such as "
                           "\"direction\" or \"tech-mairie\", rather than a person's name)")
    return login


def check_password(password: str) -> str:
    if not PASSWORD_MIN <= len(password or "") <= PASSWORD_MAX:
        raise AccountError(f"password: {PASSWORD_MIN} to {PASSWORD_MAX} characters")
    return password


def check_role(role: str, roles: tuple[str, ...]) -> str:
    if role not in roles:
        raise AccountError(f"role: one of {', '.join(roles)}, got {role!r}")
    return role


def new_password() -> str:
    return secrets.token_urlsafe(15)  # 20 characters, 120 bits


class AccountStore:
    """The accounts file. Reads come from memory, refreshed when the file
    changes (one stat per call); changes take the lock, read, write, release.
    A service's store names its `roles` and its `keeper` role (the last
    account of that role cannot be removed)."""

    roles: tuple[str, ...] = ()
    keeper: str = ""

    def __init__(self, path: str, hasher: PasswordHasher | None = None) -> None:
        self.path = path
        self.hasher = hasher or PasswordHasher()
        self._stamp: tuple | None = None
        self._accounts: dict[str, Account] = {}
        self._next = 1
        # verified against when the login is unknown: the time taken does not say which logins exist
        self._dummy: str | None = None

    def check_role(self, role: str) -> str:
        return check_role(role, self.roles)

    # reading ------------------------------------------------------------------

    def _refresh(self) -> None:
        try:
            st = os.stat(self.path)
            stamp: tuple | None = (st.st_mtime_ns, st.st_size, st.st_ino)
        except FileNotFoundError:
            stamp = None
        if stamp == self._stamp:
            return
        self._accounts, self._next = self._load() if stamp is not None else ({}, 1)
        self._stamp = stamp

    def all(self) -> list[Account]:
        self._refresh()
        return sorted(self._accounts.values(), key=lambda a: a.id)

    def get(self, account_id: str) -> Account | None:
        self._refresh()
        return self._accounts.get(account_id)

    def by_login(self, login: str) -> Account | None:
        self._refresh()
        return next((a for a in self._accounts.values() if a.login == login), None)

    def verify(self, login: str, password: str) -> Account | None:
        """The account if the password is right; None otherwise. Slow on
        purpose (argon2): call it off the event loop."""
        account = self.by_login(login)
        if account is None and self._dummy is None:
            self._dummy = self.hasher.hash(secrets.token_urlsafe(16))
        try:
            self.hasher.verify(account.hash if account else self._dummy or "", password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return None
        return account

    # changing -------------------------------------------------------------------

    @contextlib.contextmanager
    def _editing(self) -> Iterator[tuple[dict[str, Account], list[int]]]:
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        lock_fd = os.open(self.path + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            accounts, next_id = self._load() if os.path.exists(self.path) else ({}, 1)
            counter = [next_id]
            yield accounts, counter
            data = {"v": 1, "next": counter[0], "accounts": [asdict(a) for a in sorted(accounts.values(),
                                                                                        key=lambda a: a.id)]}
            write_private(self.path, json.dumps(data, indent=1, ensure_ascii=False) + "\n")
        finally:
            os.close(lock_fd)
        self._stamp = None  # read again

    def add(self, login: str, role: str, password: str) -> Account:
        check_login(login)
        self.check_role(role)
        check_password(password)
        digest = self.hasher.hash(password)
        now = time.time()
        with self._editing() as (accounts, counter):
            if any(a.login == login for a in accounts.values()):
                raise AccountError(f"login: {login!r} exists already (reset its password instead)")
            account = Account(id="u-%04d" % counter[0], login=login, role=role, hash=digest, created=now, changed=now)
            counter[0] += 1
            accounts[account.id] = account
        return account

    def reset(self, login: str, password: str, role: str | None = None) -> Account:
        check_password(password)
        if role is not None:
            self.check_role(role)
        digest = self.hasher.hash(password)
        with self._editing() as (accounts, _):
            account = next((a for a in accounts.values() if a.login == login), None)
            if account is None:
                raise AccountError(f"login: no account {login!r}")
            account = replace(account, hash=digest, changed=max(time.time(), account.changed + 1e-6),
                              role=role or account.role)
            accounts[account.id] = account
        return account

    def remove(self, login: str) -> Account:
        with self._editing() as (accounts, _):
            account = next((a for a in accounts.values() if a.login == login), None)
            if account is None:
                raise AccountError(f"login: no account {login!r}")
            if account.role == self.keeper and sum(a.role == self.keeper for a in accounts.values()) == 1:
                raise AccountError(f"the last {self.keeper} account cannot be removed (add another first)")
            del accounts[account.id]
        return account

    def _load(self) -> tuple[dict[str, Account], int]:
        try:
            with open(self.path, encoding="utf-8") as f:
                data = json.load(f)
            accounts = {}
            for row in data["accounts"]:
                a = Account(**row)
                self.check_role(a.role)
                accounts[a.id] = a
            return accounts, int(data.get("next", len(accounts) + 1))
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise AccountError(f"{self.path}: unreadable accounts file: {e}") from None


def ensure_first(store: AccountStore, environ: Mapping[str, str], out: TextIO | None = None, *, login: str,
                 role: str, env: str, program: str) -> Account | None:
    """At a service's first start: with no account at all, create the first
    one (`login`, `role`). The password is `env`'s, or generated and shown
    once: on the terminal, or written to a 0600 file beside the accounts
    when there is none (a service: the log must never hold a password).
    None when accounts exist already. `program` is the service's command
    ("preau gateway"), whose `account reset` gives a new password."""
    if store.all():
        return None
    given = environ.get(env)
    password = given or new_password()
    account = store.add(login, role, password)
    say: TextIO = sys.stderr if out is None else out
    if given:
        print(f"{program}: first account created: login \"{login}\" ({role}), password from {env}", file=say)
    elif say.isatty():
        print(f"{program}: first account created: login \"{login}\" ({role}), password {password}\n"
              f"  shown once: note it now, or reset it with `{program} account reset {login}`", file=say)
    else:
        where = first_password_path(store.path)
        write_private(where, f"login: {login}\npassword: {password}\n")
        print(f"{program}: first account created: login \"{login}\" ({role}); its password is in {where} "
              "(mode 0600): read it, then delete the file", file=say)
    return account


def account_command(store: AccountStore, action: str, login: str | None, role: str | None, password_stdin: bool,
                    program: str) -> int:
    """`PROGRAM account add|reset|remove|list`, once the service's own
    options have found its accounts file. 0, or 1 with a message (an
    AccountError); a missing login or role is a usage error (2)."""
    try:
        if action == "list":
            for a in store.all():
                print(f"{a.id}  {a.login:<20} {a.role:<11} password changed "
                      f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(a.changed))}")
            return 0
        if not login:
            print(f"{program} account: {action}: a login is needed", file=sys.stderr)
            return 2
        if action == "remove":
            a = store.remove(login)
            print(f"removed {a.id} ({a.login}); its sessions end at their next request")
            return 0
        if action == "add" and not role:
            print(f"{program} account: add: --role is needed", file=sys.stderr)
            return 2
        password = sys.stdin.readline().rstrip("\n") if password_stdin else new_password()
        if action == "add":
            assert role is not None
            a = store.add(login, role, password)
            print(f"added {a.id}: login {a.login}, role {a.role}")
        else:
            a = store.reset(login, password, role)
            print(f"password of {a.id} ({a.login}) reset; its sessions are over")
        if not password_stdin:
            print(f"password: {password}\n(shown once)")
        return 0
    except AccountError as e:
        print(f"{program} account: {e}", file=sys.stderr)
        return 1
