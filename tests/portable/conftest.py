# CPython side of the portable tests. An `async def test_*` is run with
# asyncio.run here; in the MicroPython VM, tests/mpvm awaits it instead.
# (Never copied into a test: the VM imports only the test modules.)
import asyncio
import inspect

import pytest


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem):
    if inspect.iscoroutinefunction(pyfuncitem.obj):
        asyncio.run(pyfuncitem.obj())
        return True
    return None
