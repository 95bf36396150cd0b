"""What the school's and the city's generated Mosquitto configurations share
(edge_gateway/broker_files.py, cloud_bridge/broker_files.py)."""

from __future__ import annotations

import os


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
