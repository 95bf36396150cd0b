"""Board profiles: pin maps as validated data."""

from __future__ import annotations

import json
from pathlib import Path

BOARDS_DIR = Path(__file__).parent


class ProfileError(ValueError):
    pass


def load_profile(name: str) -> dict:
    path = BOARDS_DIR / f"{name}.json"
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in BOARDS_DIR.glob("*.json")))
        raise ProfileError(f"unknown board profile {name!r} (known: {known})")
    try:
        profile = json.loads(path.read_text())
    except ValueError as e:
        raise ProfileError(f"{path.name}: not valid JSON ({e})") from e
    for key in ("name", "pins"):
        if key not in profile:
            raise ProfileError(f"{path.name}: key {key!r} missing")
    for role in ("button", "led", "ap_relay"):
        if role not in profile["pins"]:
            raise ProfileError(f"{path.name}: pins.{role} missing")
    return profile
