"""protocol.citylink.plain_body: the city's lighter check of a body whose
text it has (a version 2 batch), in place of the full walk of its values
(protocol.codec.check_values). Sound or nothing: whatever text it
lets through, the walk accepts too (hypothesis, with the values the walk
exists for: long strings, lone surrogates, huge or non-finite numbers, deep
nesting)."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.citylink import plain_body
from protocol.codec import MAX_DEPTH, MAX_STRING, ProtocolError, check_values

scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-(2**60), max_value=2**60),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40), st.text(alphabet="\ud800\udfffa\"\\e", max_size=5),
    st.sampled_from(["x" * (MAX_STRING + 1), "NaN", "Infinity", "1e999", "\\ud800"]),
)
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=20)
bodies = st.dictionaries(st.text(max_size=8), values, max_size=6)


def walk_accepts(body: dict) -> bool:
    try:
        check_values(body)
        return True
    except ProtocolError:
        return False


@settings(max_examples=3000, deadline=None)
@given(bodies, st.booleans())
def test_what_the_shortcut_lets_through_the_walk_accepts(body, ascii_only):
    try:
        text = json.dumps(body, ensure_ascii=ascii_only, separators=(",", ":"))
    except (UnicodeEncodeError, ValueError):
        return
    try:
        text.encode("utf-8")  # a body's text on the wire is UTF-8: no raw lone surrogate
        decoded = json.loads(text)
    except (UnicodeEncodeError, ValueError):
        return
    if plain_body(text, decoded):
        assert walk_accepts(decoded), text


def test_the_common_bodies_take_the_shortcut_and_the_bad_ones_do_not():
    def plain(text):
        return plain_body(text, json.loads(text))

    assert plain('{"v":1,"boot":7,"seq":4,"type":"session.started","data":{"req":3,"ap":true}}')
    assert plain('{"v":1,"interval_s":300,"n":5,"co2":[640,812.4,1450],"t":[20.5,21.0,21.4],"ap":false}')
    assert plain('{"v":1,"s":"e E NaN Infinity 12345678901234567890 \\u00e9"}')  # inside strings: harmless
    for text in ('{"v":1,"x":1e400}', '{"v":1,"x":"\\ud800"}', '{"v":1,"x":12345678901234567}', '{"v":1,"x":NaN}',
                 '{"v":1,"x":-Infinity}', '{"a":' * MAX_DEPTH + "{}" + "}" * MAX_DEPTH,
                 '{"v":"' + "x" * MAX_STRING + '"}'):
        assert not plain(text), text


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=40), st.integers(0, 12))
def test_a_column_of_numbers_reads_as_one_number_at_a_time_does(data, n):
    # _Reader.varints reads a column inline; varint() is the reference.
    from protocol.citylink import BatchError, _Reader

    def one_by_one():
        reader = _Reader(data)
        return [reader.varint() for _ in range(n)], reader.pos

    def column():
        reader = _Reader(data)
        return reader.varints(n), reader.pos

    outcomes = []
    for read in (one_by_one, column):
        try:
            outcomes.append(read())
        except BatchError as e:
            outcomes.append(str(e))
    assert outcomes[0] == outcomes[1]
