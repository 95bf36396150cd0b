"""What the school's and the city's generated Mosquitto configurations share
(edge_gateway/broker_files.py, cloud_bridge/broker_files.py)."""

from __future__ import annotations

import contextlib
import os
import signal


def run_as() -> str:
    """The account Mosquitto drops to when systemd starts it as root: the one
    that owns the 0600 files it must read again at every reload."""
    import pwd

    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:  # a uid with no name (a container): Mosquitto takes names only
        return "mosquitto"


def persistence_and_limits(data_dir: str, *, autosave_s: int, max_queued: int, max_inflight: int,
                           max_packet: int, session_expiry: str | None = None) -> list[str]:
    """Persistence on (saved every `autosave_s` and at a clean stop), queues
    long enough for QoS 1 bursts (Mosquitto's default of 1,000 queued
    messages per client drops them), one packet bounded, and the log."""
    lines = [
        "persistence true",
        f"persistence_location {os.path.abspath(data_dir)}/",
        f"autosave_interval {autosave_s}",
    ]
    if session_expiry is not None:
        lines.append(f"persistent_client_expiration {session_expiry}")
    return lines + [
        f"max_queued_messages {max_queued}",
        "max_queued_bytes 0",
        f"max_inflight_messages {max_inflight}",
        f"max_packet_size {max_packet}",
        "set_tcp_nodelay true",
        "",
        "log_dest stderr",
        "log_type error",
        "log_type warning",
        "log_type notice",
        "connection_messages true",
        "",
    ]


def reload(pid_file: str, in_force: str) -> str:
    """Ask the running broker to read its files again (SIGHUP), through the
    pid file its configuration names (Mosquitto writes it at start, in the
    foreground too); what happened, in a sentence. `in_force` says what the
    reload puts in force."""
    try:
        with open(pid_file) as f:
            pid = int(f.read().strip())
    except (OSError, ValueError):
        return (f"no running broker found ({pid_file} missing): the files take effect when Mosquitto starts "
                "with them, or reload it yourself (`systemctl reload mosquitto`, or SIGHUP)")
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        with contextlib.suppress(OSError):
            os.unlink(pid_file)
        return f"the broker of {pid_file} is not running: the files take effect when it starts"
    except PermissionError:
        return (f"not allowed to signal the broker (pid {pid}): run `sudo systemctl reload mosquitto`; "
                "until then the old files are in force")
    return f"broker reloaded (SIGHUP to pid {pid}): {in_force}"
