"""`preau demo` end to end: brokers, simulated classrooms on the real
firmware, gateway, city. The demo checks the city database itself and
returns non-zero when the story is incomplete or an access point is on."""

import asyncio

from devkit.demo import run_demo


def test_demo_story_reaches_the_city():
    lines: list[str] = []
    code = asyncio.run(run_demo(duration=44, gateway_port=0, city_port=0, keep=False, out=lines.append))
    text = "\n".join(lines)
    assert code == 0, text
    assert "[ok] cp-a: access point turned on" in text
    assert "[ok] cp-a: access point turned off" in text
    assert "[ok] cm1-c: request denied with its reason" in text
    assert "[ok] cp-a: request at lunch time denied" in text  # the policy engine, not a fixed rule
    assert "MISSING" not in text and "FAIL" not in text
    assert "school's pages" in text and "city's pages" in text
