"""The telemetry aggregator alone (edge_gateway/telemetry.py): readings in,
one record per room and interval out, with the time given."""

import json

from edge_gateway.telemetry import TelemetryAggregator

T0 = 1763900100  # a multiple of 300


def reading(uptime_ms, boot=1, **fields):
    return {"v": 1, "boot": boot, "uptime_ms": uptime_ms, "session": "idle", "ap": False} | fields


def bodies(due):
    return [(room, at, json.loads(body)) for room, at, body in due]


def test_one_record_per_room_and_interval_when_the_interval_has_ended():
    agg = TelemetryAggregator(300)
    agg.add("cm2-b", reading(1000, air={"co2": 800, "t": 20.5}), T0 + 10)
    agg.add("cm2-b", reading(61000, air={"co2": 1000, "t": 21}, projector="on", lamp_h=10), T0 + 70)
    agg.add("cp-a", reading(5000, session="active", ap=True), T0 + 20)
    assert agg.due(T0 + 299) == []  # not over yet
    assert bodies(agg.due(T0 + 300)) == [
        ("cm2-b", T0 + 300.0, {"v": 1, "interval_s": 300, "n": 2, "session": "idle", "ap": False,
                               "projector": "on", "lamp_h": 10, "co2": [800, 900.0, 1000], "t": [20.5, 20.8, 21]}),
        ("cp-a", T0 + 300.0, {"v": 1, "interval_s": 300, "n": 1, "session": "active", "ap": True})]
    assert agg.due(T0 + 900) == []  # a room that says nothing has no record


def test_a_reading_in_the_next_interval_closes_the_last_one():
    agg = TelemetryAggregator(60)
    agg.add("bcd", reading(1000, air={"lux": 300}), T0 + 1)
    agg.add("bcd", reading(70000, air={"lux": 500}), T0 + 61)
    agg.add("bcd", reading(130000, air={"lux": 700}), T0 + 125)
    out = bodies(agg.due(T0 + 130))
    assert [(at, b["lux"], b["n"]) for _, at, b in out] == [(T0 + 60.0, [300, 300, 300], 1),
                                                           (T0 + 120.0, [500, 500, 500], 1)]


def test_old_readings_of_the_same_boot_are_left_out_a_new_boot_is_not():
    agg = TelemetryAggregator(300)
    agg.add("cm2-b", reading(60000, air={"co2": 500}), T0 + 1)
    agg.add("cm2-b", reading(30000, air={"co2": 5000}), T0 + 2)  # from the board's flash, after an outage
    agg.add("cm2-b", reading(60000, air={"co2": 5000}), T0 + 3)  # the same one again
    agg.add("cm2-b", reading(1000, boot=2, air={"co2": 700}), T0 + 4)  # rebooted
    (room, at, body), = bodies(agg.due(T0 + 300))
    assert body["n"] == 2 and body["co2"] == [500, 600.0, 700] and agg.history_skipped == 2


def test_a_kit_reading_named_like_a_field_keeps_both():
    agg = TelemetryAggregator(300)
    agg.add("cm2-b", reading(1000, air={"n": 3, "ap": 1}), T0)
    (_, _, body), = bodies(agg.due(T0 + 300))
    assert body["n"] == 1 and body["ap"] is False and body["air_n"] == [3, 3.0, 3] and body["air_ap"] == [1, 1.0, 1]
