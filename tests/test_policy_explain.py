"""`preau policy explain` on the example school: the director's dry run."""

from __future__ import annotations

import io
from datetime import date
from pathlib import Path

from edge_gateway.policy import explain

EXAMPLE = str(Path(__file__).resolve().parent.parent / "examples" / "school.toml")


def run(*argv, today=None):
    out = io.StringIO()
    code = explain.main(["--config", EXAMPLE, *argv], today=today, out=out)
    return code, out.getvalue()


def body(text: str) -> str:
    """The plan without its title and legend."""
    return text.split("\n", 3)[3]


def day_block(text: str, header: str) -> str:
    start = text.index("\n" + header) + 1
    end = text.find("\n\n", start)
    return text[start : end if end != -1 else None]


def test_normal_week_in_french():
    code, text = run("--week", "2026-03-11")
    assert code == 0
    assert "Plan de la semaine du lundi 9 mars 2026 au dimanche 15 mars 2026" in text
    monday = day_block(text, "lundi 9 mars 2026")
    cp = [line for line in monday.splitlines() if "08:30–11:30" in line]
    assert any("séance + Wi-Fi" in line and "classe" in line for line in cp)
    # Wi-Fi only in class periods: never in lunch, after-school, or the leisure centre.
    for line in body(text).splitlines():
        if "séance + Wi-Fi" in line:
            assert "classe" in line, line
    assert "périscolaire (ALP)" in monday and "11:30–13:30" not in monday
    assert "mercredi 11 mars 2026" in text and "centre de loisirs" in day_block(text, "mercredi 11 mars 2026")
    assert "samedi 14 mars 2026 — week-end, aucune séance" in text


def test_wifi_never_room_never_shows_wifi():
    code, text = run("--week", "2026-03-11", "--room", "ms-gs", "--room", "tps-ps")
    assert code == 0
    assert "séance + Wi-Fi" not in body(text)
    assert "salle « jamais de Wi-Fi »" in text and "cp-a" not in text


def test_holiday_week_in_english_shows_closed_days_with_their_label():
    code, text = run("--week", "2026-04-22", "--lang", "en")
    assert code == 0
    assert "Monday 20 April 2026 — Vacances de printemps — school holidays" in text
    assert "leisure centre" in text and "session + Wi-Fi" not in body(text)
    assert "Sunday 26 April 2026 — closed: Vacances de printemps — school holidays" in text


def test_public_holiday_and_room_closure():
    code, text = run("--week", "2026-03-16", "--lang", "en", "--room", "cm2-b")
    assert code == 0 and "Monday 16 March 2026 — closed: Classe de découverte (CM2 B à Sète) — school closure" in text
    code, text = run("--week", "2026-03-16", "--lang", "en", "--room", "cm2-b", "--room", "cp-a")
    assert "cm2-b  closed (Classe de découverte (CM2 B à Sète) — school closure)" in text
    code, text = run("--week", "2026-05-01")
    assert code == 0 and "vendredi 1 mai 2026 — fermé : Fête du Travail — jour férié" in text


def test_uncovered_dates_are_warned():
    code, text = run("--week", "2031-03-12", "--lang", "en")
    assert code == 0 and "Warnings:" in text and "does not cover Monday 10 March 2031" in text


def test_default_week_is_next_monday():
    code, text = run(today=date(2026, 3, 12))
    assert code == 0 and "lundi 16 mars 2026" in text.splitlines()[0]


def test_bad_config_exits_2_with_the_error(tmp_path, capsys):
    bad = tmp_path / "school.toml"
    bad.write_text('[policy]\nzone = "D"\n[rooms.a]\n')
    out = io.StringIO()
    assert explain.main(["--config", str(bad)], out=out) == 2
    err = capsys.readouterr().err
    assert 'school.toml:2: policy.zone: expected one of: "A", "B", "C"; got "D"' in err
    assert out.getvalue() == ""
    assert explain.main(["--config", EXAMPLE, "--room", "nope"], out=out) == 2
    assert explain.main(["--config", EXAMPLE, "--week", "demain"], out=out) == 2
    assert explain.main(["--config", EXAMPLE, "--lang", "de"], out=out) == 2
