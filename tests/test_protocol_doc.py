"""docs/protocol.md and the codec agree: every example payload on the page
goes through the codec check of the section it stands in."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from protocol import codec

DOC = Path(__file__).resolve().parent.parent / "docs" / "protocol.md"

# Section heading -> how to check its examples
SECTIONS = {
    "Birth and death": codec.check_state,
    "Events": codec.check_evt,
    "Telemetry": codec.check_tele,
    "Commands": None,  # cmd or ack, told apart by their fields
    "Offline policy": codec.check_policy,
}


def examples():
    section = None
    out = []
    for block in re.split(r"^(## .*)$", DOC.read_text(), flags=re.M):
        if block.startswith("## "):
            section = block[3:].strip()
            continue
        for body in re.findall(r"```json\n(.*?)```", block, flags=re.S):
            out.append(pytest.param(section, body, id=f"{section}:{body[:40]}"))
    return out


EXAMPLES = examples()


def test_the_doc_has_examples_for_every_board_leaf():
    sections = {p.values[0] for p in EXAMPLES}
    for name in SECTIONS:
        assert any(s.startswith(name) for s in sections), name


@pytest.mark.parametrize("section, body", EXAMPLES)
def test_example_payload_matches_the_codec(section, body):
    obj = json.loads(body)
    assert obj["v"] == codec.V
    raw = body.encode()
    check = next((c for name, c in SECTIONS.items() if section.startswith(name)), "other")
    if check == "other":
        if section.startswith("Gateway state"):
            assert isinstance(obj["online"], bool) and isinstance(obj["gateway"], str)
        elif section.startswith("City link"):
            from protocol.citylink import parse_batch  # the city's own validator

            if "records" in obj:
                batch = parse_batch(obj["school"], raw)
                assert not batch.bad and len(batch.records) == len(obj["records"])
                # each record body from a board is itself a valid board payload
                for rec in obj["records"]:
                    if rec["kind"] in ("evt", "state", "ack"):
                        codec.CHECKS[rec["kind"]](rec["body"])
            else:
                assert isinstance(obj["acked"], int)
        return
    if check is None:
        leaf = "cmd" if "cmd" in obj else "ack"
        assert codec.parse(leaf, raw) == obj
        return
    assert check(codec.decode(raw)) == obj
    assert len(raw) <= codec.MAX_BOARD_PAYLOAD


def test_the_bounds_table_is_the_codes():
    """Every bound on the page is the code's, and every bound of the code is
    on the page."""
    from protocol import citylink

    section = DOC.read_text().split("\n## Bounds\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(MAX_\w+)` \| `([0-9*+ -]+)` \|", section, flags=re.M)
    assert len(rows) == len(section.split("\n| `MAX_")) - 1, "a row of the table is not `NAME` | `value`"
    for name, value in rows:
        code = getattr(codec, name) if hasattr(codec, name) else getattr(citylink, name)
        assert code == eval(value, {"__builtins__": {}}), name  # digits and * + - only
    names = {name for name, _ in rows}
    for module in (codec, citylink):
        assert {n for n in dir(module) if n.startswith("MAX_")} <= names, module.__name__
