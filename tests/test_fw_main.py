"""The board's entry point: config.json checked then released, and the
uplink brought back with backoff after a loss."""

import asyncio
import json
import sys

import pytest

from firmware import main as fw_main


class FlakyUplink:
    """A board whose uplink is down for `down` checks, and whose first
    restarts fail (a Wi-Fi access point out of reach)."""

    def __init__(self, down: int, failures: int) -> None:
        self.down = down
        self.failures = failures
        self.starts = []

    def uplink_up(self) -> bool:
        if self.down:
            self.down -= 1
            return False
        return True

    def start_uplink(self, ssid=None, password=None):
        self.starts.append((ssid, password))
        if self.failures:
            self.failures -= 1
            raise OSError("no access point in reach")


def test_uplink_comes_back_with_backoff(monkeypatch, capsys):
    waits = []

    async def fake_sleep(ms):
        waits.append(ms)
        if len(waits) > 12:
            raise asyncio.CancelledError

    monkeypatch.setattr("firmware.app.sleep_ms_async", fake_sleep)
    board = FlakyUplink(down=8, failures=2)
    cfg = {"wifi_ssid": "ecole", "wifi_password": "x" * 12}
    with pytest.raises(asyncio.CancelledError):
        asyncio.run(fw_main._keep_uplink(board, cfg))
    assert len(board.starts) == 8 and board.starts[0] == ("ecole", "x" * 12)
    # doubling from 1 s while down, capped at 60 s, back to 1 s once up
    assert waits[:8] == [1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000]
    assert waits[9:] == [1000] * (len(waits) - 9)
    assert capsys.readouterr().out.count("no access point in reach") == 2  # said, and kept going


def test_config_checked_then_released(tmp_path, monkeypatch):
    import firmware.config

    # put back afterwards: other tests hold this module's ConfigError
    monkeypatch.setitem(sys.modules, "firmware.config", firmware.config)
    monkeypatch.setattr(sys.modules["firmware"], "config", firmware.config)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"school": "0341234a", "room": "cm2-b", "broker": "gw.local"}))
    cfg, error = fw_main._read_config()
    assert error is None and cfg["room"] == "cm2-b" and cfg["grace_s"] == 120
    assert "firmware.config" not in sys.modules  # its code goes back to the heap before the app loads
    assert not hasattr(sys.modules["firmware"], "config")
    (tmp_path / "config.json").write_text('{"school": "0341234a", "room": "cm2-b", "broker": "gw.local", "port": "1883"}')
    cfg, error = fw_main._read_config()
    assert cfg is None and error == "config.json: key 'port': expected an integer, got '1883'"
    (tmp_path / "config.json").write_text('{"school": ')
    assert "not valid JSON" in fw_main._read_config()[1]
