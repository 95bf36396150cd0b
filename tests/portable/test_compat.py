# The CPython stand-ins in firmware/compat.py must behave like MicroPython's
# own: ticks wrap at 2**30 on the ESP32 port, and deadlines computed with
# ticks_add/ticks_diff must survive the wrap (every 12.4 days of uptime).
import sys

from firmware import compat

PERIOD = 1 << 30
HALF = PERIOD >> 1
MAX = PERIOD - 1


def test_micropython_flag_matches_the_interpreter():
    assert compat.MICROPYTHON == (sys.implementation.name == "micropython")


def test_ticks_ms_is_inside_the_period():
    t = compat.ticks_ms()
    assert 0 <= t < PERIOD
    assert compat.ticks_diff(compat.ticks_ms(), t) >= 0


def test_ticks_add_wraps():
    assert compat.ticks_add(MAX, 1) == 0
    assert compat.ticks_add(0, -1) == MAX
    assert compat.ticks_add(MAX - 5, 10) == 4
    assert compat.ticks_add(5, -10) == MAX - 4
    assert compat.ticks_add(1000, 0) == 1000
    assert compat.ticks_add(0, HALF - 1) == HALF - 1


def test_ticks_diff_across_the_wrap():
    assert compat.ticks_diff(0, MAX) == 1
    assert compat.ticks_diff(MAX, 0) == -1
    assert compat.ticks_diff(4, MAX - 5) == 10
    assert compat.ticks_diff(MAX - 5, 4) == -10
    assert compat.ticks_diff(12345, 12345) == 0


def test_ticks_diff_half_period_boundary():
    # Differences are signed in [-2**29, 2**29): exactly half a period reads
    # as "in the past", one less as "in the future".
    assert compat.ticks_diff(HALF - 1, 0) == HALF - 1
    assert compat.ticks_diff(HALF, 0) == -HALF
    assert compat.ticks_diff(0, HALF) == -HALF
    assert compat.ticks_diff(MAX, HALF) == HALF - 1


def test_deadline_survives_the_wrap():
    for start in (0, 1, HALF - 1, HALF, MAX - 3000, MAX):
        for delay in (1, 3000, 2700000, HALF - 1):
            deadline = compat.ticks_add(start, delay)
            assert 0 <= deadline < PERIOD
            assert compat.ticks_diff(deadline, start) == delay
            assert compat.ticks_diff(start, deadline) == -delay
            before = compat.ticks_add(deadline, -1)
            assert compat.ticks_diff(deadline, before) == 1


def test_const_returns_its_value():
    assert compat.const(0x62) == 0x62


async def test_thread_safe_flag_wakes_a_waiter():
    # What the board's tasks rely on (the button ISR and the publisher's
    # wake-up): a set before the wait is not lost, a wait blocks until a set,
    # and each wake-up consumes the set, however many came before it.
    import asyncio

    from firmware.app import ThreadSafeFlag

    flag = ThreadSafeFlag()
    woken = []

    async def waiter():
        for n in range(1, 10):  # bounded: a wait that never blocks fails the test, not the run
            await flag.wait()
            woken.append(n)

    async def let_it_run():
        for _ in range(5):
            await asyncio.sleep(0)

    flag.set()  # before anyone waits
    task = asyncio.create_task(waiter())
    await let_it_run()
    assert woken == [1]
    await let_it_run()
    assert woken == [1]  # consumed: the waiter sleeps until the next set
    flag.set()
    await let_it_run()
    assert woken == [1, 2]
    flag.set()
    flag.set()
    await let_it_run()
    assert woken == [1, 2, 3]  # two sets before it ran: one wake-up
    task.cancel()

    flag = ThreadSafeFlag()
    flag.set()
    flag.clear()  # cleared before anyone waited: nothing to wake for
    task = asyncio.create_task(flag.wait())
    await let_it_run()
    assert not task.done()
    flag.set()
    await let_it_run()
    assert task.done()
