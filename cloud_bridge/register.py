"""Which gateway owns each school, as the city's CA issued them: the view
the ingest checks every batch's `gateway` id against.

Read from the CA's `index.json` (cloud_bridge/ca.py), or a copy of it on
the workers' hosts: it holds no secret. The school's gateway ids are those
of its certificates not revoked (an expired one still counts: the broker
refuses the expired certificate itself, and batches it queued before are
genuine). The file is read again when it changes (its modification time
and size, looked at for every batch: one stat, no parse), so a new
gateway, a renewal or a replacement reaches running workers at once. A file that becomes unreadable keeps
the last good view, and says so once in the log."""

from __future__ import annotations

import logging
import os

from .ca import GATEWAY, CAError, read_index

log = logging.getLogger(__name__)


def gateways_of(path: str) -> dict[str, frozenset[str]]:
    """school -> the gateway ids of its certificates not revoked; CAError if unreadable."""
    out: dict[str, set[str]] = {}
    for c in read_index(path).certificates:
        if c.kind == GATEWAY and c.revoked is None and c.school and c.gateway:
            out.setdefault(c.school, set()).add(c.gateway)
    return {school: frozenset(ids) for school, ids in out.items()}


class GatewayRegister:
    def __init__(self, path: str):
        self.path = path
        self._stamp = self._stat()
        self._gateways = gateways_of(path)  # CAError at start: the city cannot check batches
        self._broken = False

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size, st.st_ino  # the CA replaces it: a new inode

    def _refresh(self) -> None:
        stamp = self._stat()
        if stamp == self._stamp and stamp is not None:
            return
        try:
            self._gateways = gateways_of(self.path)
        except CAError as e:
            if not self._broken:
                log.error("gateway register: %s; keeping the last good one", e)
            self._broken = True
            return
        self._stamp = stamp
        if self._broken:
            log.info("gateway register: %s readable again", self.path)
        self._broken = False

    def gateways(self, school: str) -> frozenset[str]:
        """The gateway ids allowed to send `school`'s batches (empty: none)."""
        self._refresh()
        return self._gateways.get(school, frozenset())
