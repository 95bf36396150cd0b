"""Power loss and flash corruption against the board's outbox (firmware/outbox.py).

CPython only (the portable tests run the same module in the MicroPython VM).
The promise under test (docs/outbox.md): the outbox always reopens, without
raising, and loses at most the record being written; a cut while a pop saves
its marker sends that one record again, never loses one.

- every byte offset of the last record: truncate there, reopen;
- every byte of a segment and of the marker: corrupt it, reopen;
- a simulated power cut at every byte written and every rename or remove of
  a scenario (appends, pops, drops at the cap), then reopen;
- a hypothesis property over random appends, pops, cuts and reopens.
"""

import os
import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware import outbox
from firmware.outbox import EVENT, TELEMETRY, Outbox

OVER = 12  # record header and CRC


def msg(i):
    return ('{"seq":%d,"pad":"%s"}' % (i, "x" * (i % 7))).encode()


def drain(ob):
    out = []
    while (rec := ob.peek()) is not None:
        out.append(rec[1])
        assert ob.pop() is True
    return out


def unsent(directory):
    """Payloads in order as a reopened outbox gives them, files left as they are."""
    copy = tempfile.mkdtemp(prefix="preau-outbox-copy-")
    try:
        shutil.copytree(directory, copy, dirs_exist_ok=True)
        return drain(Outbox(copy))
    finally:
        shutil.rmtree(copy)


def filled(directory, n, telemetry=lambda i: False, **kw):
    ob = Outbox(str(directory), **kw)
    for i in range(n):
        assert ob.append(msg(i), telemetry=telemetry(i))
    return ob


def offsets(n):
    """Start of each of the first n records in one segment."""
    starts, pos = [], 0
    for i in range(n):
        starts.append(pos)
        pos += len(msg(i)) + OVER
    return starts + [pos]


# -- truncation: a power cut in the middle of the last write --------------------


def test_truncating_the_last_record_at_every_offset(tmp_path):
    n = 5
    starts = offsets(n)
    base = tmp_path / "base"
    filled(base, n)
    raw = (base / "e1").read_bytes()
    assert len(raw) == starts[-1]
    for cut in range(starts[n - 1], starts[n]):
        d = tmp_path / ("cut%d" % cut)
        shutil.copytree(base, d)
        (d / "e1").write_bytes(raw[:cut])
        said = []
        ob = Outbox(str(d), log=said.append)
        assert len(ob) == n - 1, cut
        assert bool(said) == (cut > starts[n - 1])  # a torn tail is reported
        assert ob.append(b"after") is True
        ob.append(b"tele", telemetry=True)
        assert drain(Outbox(str(d))) == [msg(i) for i in range(n - 1)] + [b"after", b"tele"], cut


def test_truncating_an_older_segment_loses_its_last_record_only(tmp_path):
    filled(tmp_path, 6, segment=2 * (len(msg(0)) + OVER) + 4)
    first = (tmp_path / "e1").read_bytes()
    assert (tmp_path / "e2").exists() and len(first) == offsets(2)[-1]
    for cut in range(offsets(1)[-1], len(first)):
        (tmp_path / "e1").write_bytes(first[:cut])
        assert unsent(tmp_path) == [msg(0)] + [msg(i) for i in range(2, 6)], cut


# -- corruption of any byte -------------------------------------------------


def _which(starts, pos):
    return max(i for i, s in enumerate(starts[:-1]) if s <= pos)


def test_corrupting_any_byte_loses_that_record_only(tmp_path):
    n = 4
    starts = offsets(n)
    base = tmp_path / "base"
    filled(base, n)
    raw = (base / "e1").read_bytes()
    d = tmp_path / "d"
    for pos in range(len(raw)):
        for bad in (raw[pos] ^ 0xFF, 0xA5, 0x00):
            if bad == raw[pos]:
                continue
            if d.exists():
                shutil.rmtree(d)
            shutil.copytree(base, d)
            (d / "e1").write_bytes(raw[:pos] + bytes([bad]) + raw[pos + 1 :])
            said = []
            ob = Outbox(str(d), log=said.append)
            hit = _which(starts, pos)
            want = [msg(i) for i in range(n) if i != hit]
            assert said, (pos, bad)
            ob.append(b"after")
            assert drain(ob) == want + [b"after"], (pos, bad)


def test_corrupting_any_byte_of_the_marker_resends_and_never_loses(tmp_path):
    base = tmp_path / "base"
    ob = filled(base, 5)
    for _ in range(2):
        ob.peek()
        ob.pop()
    raw = (base / "sent").read_bytes()
    d = tmp_path / "d"
    for pos in range(len(raw) + 1):
        for variant in (raw[:pos], raw[:pos] + bytes([raw[pos] ^ 0x01]) + raw[pos + 1 :] if pos < len(raw) else raw):
            if d.exists():
                shutil.rmtree(d)
            shutil.copytree(base, d)
            (d / "sent").write_bytes(variant)
            got = drain(Outbox(str(d)))
            if variant == raw:
                assert got == [msg(i) for i in range(2, 5)]
            else:  # all resent: the gateway drops the duplicates by (boot, seq)
                assert got == [msg(i) for i in range(5)], pos


def test_a_segment_of_garbage_is_removed_and_reported(tmp_path):
    (tmp_path / "e3").write_bytes(os.urandom(300).replace(b"\xa5", b"\x00"))
    said = []
    ob = Outbox(str(tmp_path), log=said.append)
    assert len(ob) == 0 and said and not (tmp_path / "e3").exists()
    ob.append(b"x")
    assert drain(Outbox(str(tmp_path))) == [b"x"]


# -- power cuts at every step --------------------------------------------------


class PowerCut(BaseException):
    """Not an OSError: the outbox must not catch it, as it can't catch a real cut."""


class Flash:
    """Lets `budget` bytes be written and renames/removes be done, then cuts.

    A write that would overrun the budget writes the bytes that fit (a torn
    write, as FAT leaves it) and cuts; a rename or remove with no budget left
    does not happen.
    """

    def __init__(self, budget):
        self.budget = budget
        self.spent = 0

    def _spend(self, n):
        if n > self.budget:
            return False
        self.budget -= n
        self.spent += n
        return True

    def open(self, path, mode="r"):
        f = open(path, mode)  # noqa: SIM115 - handed to the caller, who closes it
        if "r" in mode:
            return f
        flash = self

        class Torn:
            def __enter__(self):
                return self

            def __exit__(self, *exc):
                f.close()

            def write(self, data):
                data = bytes(data)
                if not flash._spend(len(data)):
                    f.write(data[: flash.budget])
                    flash.spent += flash.budget
                    flash.budget = 0
                    raise PowerCut()
                return f.write(data)

        return Torn()

    def rename(self, a, b):
        if not self._spend(1):
            raise PowerCut()
        os.rename(a, b)

    def remove(self, path):
        if not self._spend(1):
            raise PowerCut()
        os.remove(path)

    def __getattr__(self, name):  # stat, listdir, mkdir
        return getattr(os, name)


def run_cut(monkeypatch, directory, budget, scenario):
    """Run scenario(log) on a Flash with `budget`; True if it completed."""
    flash = Flash(budget)
    monkeypatch.setattr(outbox, "open", flash.open, raising=False)
    monkeypatch.setattr(outbox, "os", flash)
    try:
        scenario()
        done = True
    except PowerCut:
        done = False
    finally:
        monkeypatch.undo()
    return done, flash.spent


def _cut_everywhere(monkeypatch, make_scenario, check):
    budget = 0
    while True:
        d = tempfile.mkdtemp(prefix="preau-outbox-cut-")
        try:
            log = []
            done, _ = run_cut(monkeypatch, d, budget, make_scenario(d, log))
            check(d, log, done)
        finally:
            shutil.rmtree(d)
        if done:
            return budget
        budget += 1


def test_power_cut_at_every_step_of_appends_and_pops(monkeypatch):
    # log: ("appended", i) once append returned; ("popping", i) before pop; ("popped", i)
    def make(d, log):
        def scenario():
            ob = Outbox(d, segment=70)
            for i in range(4):
                assert ob.append(msg(i), telemetry=i == 2)
                log.append(("appended", i))
            for _ in range(2):
                kind, payload = ob.peek()
                i = [j for j in range(4) if msg(j) == payload][0]
                log.append(("popping", i))
                assert ob.pop()
                log.append(("popped", i))
            for i in range(4, 6):
                assert ob.append(msg(i))
                log.append(("appended", i))

        return scenario

    def check(d, log, done):
        appended = [i for what, i in log if what == "appended"]
        popped = [i for what, i in log if what == "popped"]
        want = [i for i in appended if i not in popped]
        got = [int(p.split(b",")[0].split(b":")[1]) for p in drain(Outbox(d))]
        popping = [i for what, i in log if what == "popping" and i not in popped]
        sent = [i for i in want if i not in popping]  # its marker was saved: not resent
        writing = max(appended) + 1 if appended else 0
        # the record being popped may come back once; the one being written
        # is there only if all its bytes were
        assert got in (want, sent, want + [writing], sent + [writing]), (log, got)
        if done:
            assert got == [2, 3, 4, 5]

    steps = _cut_everywhere(monkeypatch, make, check)
    assert steps > 100  # the scenario was cut at each of its bytes and renames


def test_power_cut_at_every_step_of_a_drop_at_the_cap(monkeypatch):
    rec = len(msg(0)) + OVER
    full = {}

    def make(d, log):
        def scenario():
            ob = Outbox(d, cap=5 * rec + 20, segment=2 * rec + 10)
            for i in range(9):
                ob.append(msg(i), telemetry=i % 3 == 1)
                log.append(i)

        return scenario

    def check(d, log, done):
        ob = Outbox(d)
        got = [int(p.split(b",")[0].split(b":")[1]) for p in drain(ob)]
        assert got == sorted(got)
        writing = len(log)
        lost = [i for i in log if i not in got]
        if done:  # uncut: telemetry 1 and 4 went first, then events 0 and 2 (7 came later)
            assert lost == [0, 1, 2, 4] and ob.dropped == 4 and ob.dropped_tele == 2
            full["lost"] = lost
            return
        # a cut run dropped a prefix of what the uncut run drops, or less
        assert set(lost) - {writing} <= {0, 1, 2, 4}, (log, got)
        # a cut between a segment's removal and the marker save misses its count
        assert 0 <= len(lost) - ob.dropped <= 2, (log, got, ob.dropped)

    _cut_everywhere(monkeypatch, make, check)
    assert full


# -- property: random appends, pops, cuts and reopens ----------------------------

OPS = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.booleans()),
        st.tuples(st.just("pop"), st.just(False)),
        st.tuples(st.just("reopen"), st.just(False)),
        st.tuples(st.just("cut"), st.integers(0, 60)),  # an append cut after that many bytes
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS)
def test_random_appends_pops_cuts_and_reopens_keep_order_and_lose_nothing(ops, monkeypatch):
    d = tempfile.mkdtemp(prefix="preau-outbox-prop-")
    try:
        ob = Outbox(d, segment=90)
        model = []  # (id, kind) unsent, in order
        n = 0
        for op, arg in ops:
            if op == "append":
                assert ob.append(msg(n), telemetry=arg)
                model.append((n, TELEMETRY if arg else EVENT))
                n += 1
            elif op == "pop":
                rec = ob.peek()
                if not model:
                    assert rec is None
                    continue
                assert rec == (model[0][1], msg(model[0][0]))
                assert ob.pop()
                model.pop(0)
            elif op == "reopen":
                ob = Outbox(d, segment=90)
            else:  # power cut while appending, then the board restarts
                done, _ = run_cut(monkeypatch, d, arg, lambda ob=ob, n=n: ob.append(msg(n)))
                ob = Outbox(d, segment=90)
                if done or len(ob) == len(model) + 1:
                    model.append((n, EVENT))  # written whole before the cut
                n += 1
            assert len(ob) == len(model)
        assert [(k, p) for k, p in _peek_all(ob)] == [(k, msg(i)) for i, k in model]
        assert ob.dropped == 0
    finally:
        shutil.rmtree(d)


def _peek_all(ob):
    out = []
    while (rec := ob.peek()) is not None:
        out.append(rec)
        ob.pop()
    return out


def test_bytes_used_matches_the_files(tmp_path):
    ob = filled(tmp_path, 20, telemetry=lambda i: i % 4 == 0, segment=100, cap=600)
    files = sum(p.stat().st_size for p in Path(tmp_path).iterdir() if p.name[0] in "et")
    assert ob.bytes_used == files <= 600
    assert Outbox(str(tmp_path), cap=600, segment=100).bytes_used == files
