"""protocol.codec's one-pass check of a well-formed event (`_evt_plain`),
which the gateway and the city run on every event before the full checks:
sound or nothing. Whatever it accepts, the full checks accept too
(hypothesis, from well-formed events of every type, each field then
dropped, retyped or pushed past its bounds); and the events boards send
take it."""

from __future__ import annotations

import copy

from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.codec import (
    _EVT_DATA,
    _EVT_OPTIONAL,
    MAX_COUNT,
    MAX_TEXT,
    MAX_TIME,
    MAX_UPTIME_MS,
    NAMES,
    TEXT,
    ProtocolError,
    _check_evt_full,
    _evt_plain,
    check_evt,
)


def example(kind: str) -> dict:
    def value(rule):
        if type(rule) is tuple:
            return rule[1]
        if rule == TEXT:
            return "x" * MAX_TEXT
        if rule == NAMES:
            return ["co2"]
        return True
    data = {name: value(rule) for name, rule in _EVT_DATA[kind] + _EVT_OPTIONAL.get(kind, ())}
    return {"v": 1, "boot": MAX_COUNT, "seq": 1, "uptime_ms": 0, "time": None, "type": kind, "data": data}


def full_accepts(obj) -> bool:
    try:
        _check_evt_full(obj)
        return True
    except ProtocolError:
        return False


# Every bound of the contract, either side of it.
BOUNDS = sorted({b + d for rule in [r for rules in list(_EVT_DATA.values()) + list(_EVT_OPTIONAL.values())
                                    for _, r in rules if type(r) is tuple] + [(0, MAX_COUNT), (1, MAX_COUNT),
                                                                              (0, MAX_TIME), (0, MAX_UPTIME_MS)]
                 for b in rule for d in (-1, 0, 1)})
odd_values = st.one_of(
    st.sampled_from(BOUNDS), st.sampled_from(BOUNDS),
    st.none(), st.booleans(), st.integers(min_value=-2, max_value=2**41), st.floats(allow_nan=True),
    st.text(max_size=3), st.text(min_size=MAX_TEXT, max_size=MAX_TEXT + 2), st.lists(st.text(max_size=33), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
fields = st.sampled_from(["boot", "seq", "uptime_ms", "time", "type", "data", "replay", "v"])


TOP_RULES = {"boot": (0, MAX_COUNT), "seq": (1, MAX_COUNT), "uptime_ms": (0, MAX_UPTIME_MS), "time": (0, MAX_TIME)}


@settings(max_examples=4000, deadline=None)
@given(st.sampled_from(sorted(_EVT_DATA)),
       st.lists(st.tuples(st.booleans(), st.booleans(), st.integers(0, 8), fields, odd_values,
                          st.sampled_from([None, (0, -1), (0, 0), (1, 0), (1, 1)])), min_size=1, max_size=3))
def test_what_the_fast_check_accepts_the_full_checks_accept(kind, changes):
    obj = copy.deepcopy(example(kind))
    rules = dict(_EVT_DATA[kind] + _EVT_OPTIONAL.get(kind, ()))
    for in_data, drop, pick, name, value, edge in changes:
        data = obj.get("data")
        if in_data and isinstance(data, dict) and data:
            target, name = data, sorted(data)[pick % len(data)]
            rule = rules.get(name)
        else:
            target, rule = obj, TOP_RULES.get(name)
        if edge is not None and type(rule) is tuple:
            value = rule[edge[0]] + edge[1]  # at a bound of this very field, or one past it
        if drop:
            target.pop(name, None)
        else:
            target[name] = value
    if _evt_plain(obj):
        assert full_accepts(obj), obj


def test_every_type_of_well_formed_event_takes_the_fast_check():
    for kind in _EVT_DATA:
        obj = example(kind)
        assert full_accepts(obj)
        if not any(rule == NAMES for _, rule in _EVT_DATA[kind]):
            assert _evt_plain(obj), kind
        assert check_evt(obj) is obj


def test_the_faults_still_get_their_sentence():
    obj = example("session.started")
    obj["data"]["duration_s"] = 10**6
    assert not _evt_plain(obj)
    try:
        check_evt(obj)
    except ProtocolError as e:
        assert "data.duration_s" in str(e)
    else:
        raise AssertionError("accepted an event beyond its bounds")
    obj = example("ap.changed")
    obj["data"]["on"] = 1
    assert not _evt_plain(obj) and not full_accepts(obj)
    obj = example("boot")
    obj["type"] = ["boot"]  # unhashable: refused, not a TypeError
    assert not _evt_plain(obj) and not full_accepts(obj)
