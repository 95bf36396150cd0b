"""The pages' words, in French (the default: the school's language) and
English, and board events told as a director would say them ("séance
démarrée par l'enseignant", not `session.started`)."""

from __future__ import annotations

from common.web.i18n import LANGS, duration, local_time, translate, word_of  # noqa: F401 - the pages take them here

ROLE_WORDS = {"fr": {"director": "direction", "technician": "technicien", "viewer": "lecture seule"},
              "en": {"director": "director", "technician": "technician", "viewer": "viewer"}}

WORDS: dict[str, dict[str, str]] = {
    "fr": {
        "app": "Préau — passerelle de l'école", "login": "Connexion", "login_title": "Connexion à la passerelle",
        "user": "Identifiant", "password": "Mot de passe", "sign_in": "Se connecter", "logout": "Se déconnecter",
        "bad_login": "Identifiant ou mot de passe incorrect.",
        "too_many": "Trop d'essais : réessayez dans {s} secondes.",
        "nav_grid": "Classes", "nav_overrides": "Dérogations", "nav_audit": "Journal", "nav_boards": "Cartes", "nav_week": "La semaine", "status": "État", "edit_week": "Modifier les créneaux de la semaine",
        "confirm": "Vraiment ? La séance en cours dans cette classe s'arrêtera.",
        "nav_docs": "API", "main_nav": "Navigation principale", "lang_other": "English",
        "grid_title": "Les classes maintenant", "events_title": "Derniers événements",
        "live_on": "En direct", "live_off": "Connexion perdue, reprise…",
        "online": "en ligne", "offline": "hors ligne", "never_seen": "jamais vue",
        "session": "Séance", "session_idle": "pas de séance", "session_requesting": "demande en cours",
        "session_active": "en cours", "time_left": "reste {t}", "projector": "Vidéoprojecteur",
        "ap": "Wi-Fi de la classe", "ap_on": "allumé", "ap_off": "éteint", "wifi_never": "jamais (classe sans Wi-Fi)",
        "kit": "Malle", "no_kit": "aucune", "firmware": "Logiciel", "lamp": "lampe {h} h",
        "readings": "Mesures", "board": "Carte", "last_seen": "Vue", "unknown": "inconnu", "no_events": "Aucun événement.",
        "p_off": "en veille", "p_warming": "chauffe", "p_on": "allumé", "p_cooling": "refroidissement",
        "p_error": "en erreur", "p_unknown": "état inconnu",
        "overrides_title": "Dérogations en cours", "override_new": "Nouvelle dérogation",
        "scope": "Portée", "scope_room": "une classe", "scope_school": "toute l'école", "room": "Classe",
        "effect": "Décision", "effect_deny": "interdire", "effect_allow": "autoriser",
        "ap_also": "Wi-Fi compris (autorisation)", "ap_only": "Wi-Fi seulement (interdiction)",
        "starts": "Début (heure de l'école)", "expires": "Fin (heure de l'école)", "why": "Motif",
        "why_hint": "Par exemple « évaluation sur papier » ; jamais un nom de personne.",
        "starts_hint": "Vide : maintenant.", "add": "Ajouter", "cancel": "Annuler",
        "none_in_force": "Aucune dérogation en cours.", "by": "Par", "created": "Créée",
        "override_added": "Dérogation {id} ajoutée.", "override_cancelled": "Dérogation {id} annulée.",
        "audit_title": "Journal des modifications", "when": "Quand", "who": "Qui", "action": "Action",
        "detail": "Détail", "boards_title": "Les cartes des classes", "provisioning": "Mise en service",
        "provisioned": "en service", "not_provisioned": "aucune carte", "revoked": "révoquée",
        "identify": "Identifier (clignoter)", "end": "Terminer la séance", "reboot": "Redémarrer",
        "sent": "Commande « {cmd} » envoyée à {room} ({id}).", "forbidden": "Accès refusé",
        "forbidden_text": "Votre rôle ne permet pas de voir cette page.", "docs_title": "API de la passerelle",
        "errors": "À corriger :", "you": "Connecté : {login} ({role})", "actions": "Actions",
        "a_override.add": "dérogation ajoutée", "a_override.cancel": "dérogation annulée",
        "a_config.reload": "configuration rechargée", "a_config.rejected": "configuration refusée",
        "a_board.identify": "carte identifiée", "a_board.end": "séance terminée à distance",
        "a_board.reboot": "carte redémarrée",
        # the room's page (room.py) and the radio report (radio.py)
        "nav_radio": "Temps de Wi-Fi", "radio_title": "Temps de Wi-Fi des classes",
        "radio_week": "Semaine {n} de {year},", "radio_span": "du {first} au {last}", "radio_week_short": "S{n}",
        "radio_school": "Toute l'école", "radio_total": "Total",
        "radio_caption": "Minutes de Wi-Fi allumé, par classe et par jour",
        "radio_weeks": "Minutes de Wi-Fi par semaine (la semaine choisie et les cinq précédentes)",
        "radio_pick_week": "Semaine", "radio_show": "Afficher", "radio_from": "Du", "radio_to": "au",
        "radio_school_name": "École {school}", "radio_school_named": "{name} ({school})",
        "radio_intro": "Durée pendant laquelle le point d'accès Wi-Fi de chaque classe était allumé, en minutes. "
                       "La loi (n° 2015-136, art. 7) demande qu'il soit éteint en dehors des activités numériques "
                       "pédagogiques : la carte de la classe ne l'allume que pendant une séance demandée par "
                       "l'enseignant et l'éteint à la fin.",
        "radio_pdf": "Télécharger le PDF", "radio_print": "Imprimer",
        "radio_source": "Calcul : à partir des allumages et extinctions du relais du point d'accès que chaque carte "
                        "envoie à la passerelle (et de ses redémarrages, Wi-Fi éteint), à l'heure de l'école ({tz}). "
                        "Un Wi-Fi encore allumé compte jusqu'à maintenant, au plus {cap} minutes d'affilée "
                        "(la limite que la carte applique d'elle-même). Une séance à cheval sur minuit compte "
                        "pour chaque jour sa part.",
        "radio_bad_week": "Semaine : donnez une semaine (2026-W48) ou une date de cette semaine.",
        "radio_bad_from": "Du : donnez une date (jour, mois, année).",
        "radio_bad_to": "Au : donnez une date après le début, au plus 31 jours plus loin.",
        "radio_unit": "Durées en minutes ; « - » : jour à venir.", "radio_made": "Établi le {at} par la passerelle Préau.",
        "wd_0": "lun.", "wd_1": "mar.", "wd_2": "mer.", "wd_3": "jeu.", "wd_4": "ven.", "wd_5": "sam.", "wd_6": "dim.",
        "room_title": "Classe {room}", "room_unknown": "Classe inconnue",
        "room_unknown_text": "Il n'y a pas de classe « {room} » dans cette école.",
        "room_today": "Les séances d'aujourd'hui", "room_no_session": "Aucune séance aujourd'hui.",
        "s_start": "Début", "s_end": "Fin", "s_length": "Durée", "s_started_by": "Démarrée par",
        "s_ended": "Terminée", "s_running": "en cours", "s_unknown": "inconnue",
        "s_by_teacher": "l'enseignant (bouton)", "s_src_gateway": "accordée par la passerelle",
        "s_src_offline": "décidée par la carte seule", "s_end_time": "à la fin du temps accordé",
        "s_end_teacher": "par l'enseignant", "s_end_command": "à distance (direction ou technicien)",
        "s_end_shutdown": "à l'arrêt de la carte", "s_end_by": "à distance ({role})", "s_end_boot": "au redémarrage de la carte",
        "room_week": "Les 7 derniers jours", "tl_session": "Séance", "tl_ap": "Wi-Fi", "tl_projector": "Vidéoprojecteur",
        "tl_none": "rien", "tl_day": "Jour", "tl_hours": "De 0 h à 24 h",
        "room_air": "L'air de la classe", "span_7d": "7 jours", "span_24h": "24 heures", "span_label": "Période",
        "chart_co2": "CO₂ (ppm)", "chart_t": "Température (°C)",
        "chart_empty": "aucune mesure sur cette période (pas de malle de capteurs branchée ?)",
        "chart_desc": "Du {first} au {last} : minimum {lo} {unit}, moyenne {mean} {unit}, maximum {hi} {unit} "
                      "({n} intervalles mesurés).",
        "chart_summary": "Résumé des mesures", "chart_reading": "Mesure", "chart_min": "Minimum",
        "chart_mean": "Moyenne", "chart_max": "Maximum", "chart_count": "Intervalles",
        "chart_source": "Ligne : moyenne de chaque intervalle ; bande : minimum et maximum. Mesures de la malle, "
                        "regroupées par la passerelle, gardées 7 jours.",
        "room_projector_now": "Maintenant", "room_lamp": "Heures de lampe", "room_faults": "Erreurs (7 jours)",
        "room_no_fault": "Aucune erreur signalée.", "room_log": "Journal de la classe (7 jours)",
    },
    "en": {
        "app": "Préau — school gateway", "login": "Log in", "login_title": "Log in to the gateway",
        "user": "Login", "password": "Password", "sign_in": "Log in", "logout": "Log out",
        "bad_login": "Wrong login or password.", "too_many": "Too many tries: try again in {s} seconds.",
        "nav_grid": "Classrooms", "nav_overrides": "Overrides", "nav_audit": "Audit log", "nav_boards": "Boards", "nav_week": "The week", "status": "Status", "edit_week": "Edit the week's periods",
        "confirm": "Really? The lesson running in this classroom will stop.",
        "nav_docs": "API", "main_nav": "Main navigation", "lang_other": "Français",
        "grid_title": "Classrooms now", "events_title": "Latest events",
        "live_on": "Live", "live_off": "Connection lost, retrying…",
        "online": "online", "offline": "offline", "never_seen": "never seen",
        "session": "Session", "session_idle": "no session", "session_requesting": "requesting",
        "session_active": "running", "time_left": "{t} left", "projector": "Projector",
        "ap": "Classroom Wi-Fi", "ap_on": "on", "ap_off": "off", "wifi_never": "never (no Wi-Fi room)",
        "kit": "Kit", "no_kit": "none", "firmware": "Firmware", "lamp": "lamp {h} h",
        "readings": "Readings", "board": "Board", "last_seen": "Seen", "unknown": "unknown", "no_events": "No events.",
        "p_off": "standby", "p_warming": "warming up", "p_on": "on", "p_cooling": "cooling down",
        "p_error": "error", "p_unknown": "unknown state",
        "overrides_title": "Overrides in force", "override_new": "New override",
        "scope": "Scope", "scope_room": "one classroom", "scope_school": "whole school", "room": "Classroom",
        "effect": "Decision", "effect_deny": "deny", "effect_allow": "allow",
        "ap_also": "Wi-Fi too (allow)", "ap_only": "Wi-Fi only (deny)",
        "starts": "Starts (school time)", "expires": "Ends (school time)", "why": "Reason",
        "why_hint": "For example \"paper test\"; never a person's name.",
        "starts_hint": "Empty: now.", "add": "Add", "cancel": "Cancel",
        "none_in_force": "No override in force.", "by": "By", "created": "Created",
        "override_added": "Override {id} added.", "override_cancelled": "Override {id} cancelled.",
        "audit_title": "Audit log", "when": "When", "who": "Who", "action": "Action",
        "detail": "Detail", "boards_title": "Classroom boards", "provisioning": "Provisioning",
        "provisioned": "in service", "not_provisioned": "no board", "revoked": "revoked",
        "identify": "Identify (blink)", "end": "End session", "reboot": "Reboot",
        "sent": "Command \"{cmd}\" sent to {room} ({id}).", "forbidden": "Forbidden",
        "forbidden_text": "Your role may not see this page.", "docs_title": "Gateway API",
        "errors": "To fix:", "you": "Logged in: {login} ({role})", "actions": "Actions",
        "a_override.add": "override added", "a_override.cancel": "override cancelled",
        "a_config.reload": "configuration reloaded", "a_config.rejected": "configuration refused",
        "a_board.identify": "board identified", "a_board.end": "session ended remotely",
        "a_board.reboot": "board rebooted",
        "nav_radio": "Wi-Fi time", "radio_title": "Classroom Wi-Fi time",
        "radio_week": "Week {n} of {year},", "radio_span": "from {first} to {last}", "radio_week_short": "W{n}",
        "radio_school": "Whole school", "radio_total": "Total",
        "radio_caption": "Minutes of Wi-Fi on, per classroom and day",
        "radio_weeks": "Minutes of Wi-Fi per week (the week chosen and the five before)",
        "radio_pick_week": "Week", "radio_show": "Show", "radio_from": "From", "radio_to": "to",
        "radio_school_name": "School {school}", "radio_school_named": "{name} ({school})",
        "radio_intro": "How long each classroom's Wi-Fi access point was on, in minutes. The law (no. 2015-136, "
                       "art. 7) wants it off outside digital teaching: the classroom's board switches it on only "
                       "during a session the teacher asked for, and off at its end.",
        "radio_pdf": "Download the PDF", "radio_print": "Print",
        "radio_source": "How: from the access point relay's switches on and off that each board sends the gateway "
                        "(and its restarts, Wi-Fi off), in school time ({tz}). A Wi-Fi still on counts up to now, "
                        "at most {cap} minutes in a row (the limit the board holds by itself). A session across "
                        "midnight counts for each day its part.",
        "radio_bad_week": "Week: give a week (2026-W48) or a date in it.",
        "radio_bad_from": "From: give a date (day, month, year).",
        "radio_bad_to": "To: give a date after the start, at most 31 days later.",
        "radio_unit": "Minutes; \"-\": a day to come.", "radio_made": "Made on {at} by the Préau gateway.",
        "wd_0": "Mon", "wd_1": "Tue", "wd_2": "Wed", "wd_3": "Thu", "wd_4": "Fri", "wd_5": "Sat", "wd_6": "Sun",
        "room_title": "Classroom {room}", "room_unknown": "Unknown classroom",
        "room_unknown_text": "There is no classroom \"{room}\" in this school.",
        "room_today": "Today's sessions", "room_no_session": "No session today.",
        "s_start": "Start", "s_end": "End", "s_length": "Length", "s_started_by": "Started by",
        "s_ended": "Ended", "s_running": "running", "s_unknown": "unknown",
        "s_by_teacher": "the teacher (button)", "s_src_gateway": "granted by the gateway",
        "s_src_offline": "decided by the board alone", "s_end_time": "at the end of the time granted",
        "s_end_teacher": "by the teacher", "s_end_command": "remotely (director or technician)",
        "s_end_shutdown": "as the board shut down", "s_end_by": "remotely ({role})", "s_end_boot": "as the board restarted",
        "room_week": "The last 7 days", "tl_session": "Session", "tl_ap": "Wi-Fi", "tl_projector": "Projector",
        "tl_none": "nothing", "tl_day": "Day", "tl_hours": "From 0:00 to 24:00",
        "room_air": "The classroom's air", "span_7d": "7 days", "span_24h": "24 hours", "span_label": "Period",
        "chart_co2": "CO₂ (ppm)", "chart_t": "Temperature (°C)",
        "chart_empty": "no readings over this period (no sensor kit plugged in?)",
        "chart_desc": "From {first} to {last}: lowest {lo} {unit}, mean {mean} {unit}, highest {hi} {unit} "
                      "({n} intervals measured).",
        "chart_summary": "Readings in short", "chart_reading": "Reading", "chart_min": "Lowest",
        "chart_mean": "Mean", "chart_max": "Highest", "chart_count": "Intervals",
        "chart_source": "Line: each interval's mean; band: its lowest and highest. The kit's readings, grouped by "
                        "the gateway, kept 7 days.",
        "room_projector_now": "Now", "room_lamp": "Lamp hours", "room_faults": "Faults (7 days)",
        "room_no_fault": "No fault reported.", "room_log": "The classroom's log (7 days)",
    },
}


def t(lang: str, key: str, **values: object) -> str:
    return translate(WORDS, lang, key, **values)


def role_word(lang: str, role: str) -> str:
    return word_of(ROLE_WORDS, lang, role)


def projector_word(lang: str, state: str | None) -> str:
    if state is None:
        return t(lang, "unknown")
    return t(lang, f"p_{state}") if f"p_{state}" in WORDS["fr"] else state


_ENDED_FR = {"teacher": "par l'enseignant", "time": "à la fin du temps accordé", "command": "à distance",
             "shutdown": "à l'arrêt de la carte"}
_ENDED_EN = {"teacher": "by the teacher", "time": "at the end of the time granted", "command": "remotely",
             "shutdown": "as the board shut down"}


# why the access point's relay changed (docs/protocol.md, ap.changed)
_AP_WHY_FR = {"session": "séance", "session_end": "fin de séance", "teacher": "par l'enseignant",
              "command": "à distance", "shutdown": "arrêt de la carte", "time": "fin du temps accordé",
              "cap": "durée maximale atteinte"}
_AP_WHY_EN = {"session": "session", "session_end": "end of session", "teacher": "by the teacher",
              "command": "remotely", "shutdown": "board shutting down", "time": "end of the time granted",
              "cap": "maximum length reached"}


def event_words(lang: str, kind: str, data: dict) -> str:
    """A board event as a sentence."""
    fr = lang != "en"
    d = data if isinstance(data, dict) else {}
    if kind == "boot":
        return "carte démarrée" if fr else "board started"
    if kind == "button":
        long = d.get("press") == "long"
        return ("appui long sur le bouton" if long else "appui sur le bouton") if fr else \
            ("long press on the button" if long else "button pressed")
    if kind == "lesson.requested":
        if d.get("extend"):
            return "prolongation demandée par l'enseignant" if fr else "extension asked for by the teacher"
        return "séance demandée par l'enseignant" if fr else "session asked for by the teacher"
    if kind == "session.started":
        minutes = int(d.get("duration_s", 0)) // 60
        alone = d.get("source") == "offline"
        wifi = (", Wi-Fi allumé" if d.get("ap") else ", sans Wi-Fi") if fr else (", Wi-Fi on" if d.get("ap") else ", no Wi-Fi")
        if fr:
            return f"séance démarrée par l'enseignant ({minutes} min{wifi}{', décidée par la carte seule' if alone else ''})"
        return f"session started by the teacher ({minutes} min{wifi}{', decided by the board alone' if alone else ''})"
    if kind == "session.denied":
        reason = d.get("reason", "?")
        if d.get("extend"):
            return f"prolongation refusée ({reason})" if fr else f"extension refused ({reason})"
        return f"séance refusée ({reason})" if fr else f"session refused ({reason})"
    if kind == "session.ended":
        reason = d.get("reason", "")
        how = (_ENDED_FR if fr else _ENDED_EN).get(reason, f"({reason})")
        return f"séance terminée {how}" if fr else f"session ended {how}"
    if kind == "session.extended":
        minutes = int(d.get("added_s", 0)) // 60
        return f"séance prolongée de {minutes} min" if fr else f"session extended by {minutes} min"
    if kind == "ap.changed":
        on = d.get("on")
        why = (_AP_WHY_FR if fr else _AP_WHY_EN).get(str(d.get("reason")), "")
        why = f" ({why})" if why else ""
        return (("Wi-Fi de la classe allumé" if on else "Wi-Fi de la classe éteint") if fr else
                ("classroom Wi-Fi on" if on else "classroom Wi-Fi off")) + why
    if kind == "projector.changed":
        word = projector_word(lang, d.get("state"))
        return f"vidéoprojecteur : {word}" if fr else f"projector: {word}"
    if kind == "projector.fault":
        return f"panne du vidéoprojecteur ({d.get('error', '?')})" if fr else f"projector fault ({d.get('error', '?')})"
    if kind == "kit.attached":
        return f"malle « {d.get('kit', '?')} » branchée" if fr else f"kit \"{d.get('kit', '?')}\" plugged in"
    if kind == "kit.detached":
        return f"malle « {d.get('kit', '?')} » débranchée" if fr else f"kit \"{d.get('kit', '?')}\" unplugged"
    if kind == "kit.fault":
        return f"capteur {d.get('sensor', '?')} en panne" if fr else f"sensor {d.get('sensor', '?')} failing"
    if kind == "air.alert":
        if d.get("on"):
            return f"air à renouveler : CO₂ {d.get('co2')} ppm" if fr else f"stale air: CO₂ {d.get('co2')} ppm"
        return "air de nouveau correct" if fr else "air back to normal"
    if kind == "cmd.rejected":
        return "commande refusée par la carte" if fr else "command refused by the board"
    return kind


# The gateway's override rules speak English (edge_gateway/gateway.py, the
# API's 422): the page says the common ones in French, the rest as they are.
_OVERRIDE_FR = (
    ("must be in the future", "la fin doit être dans le futur"),
    ("must be after starts", "la fin doit être après le début"),
    ("an override lasts at most", "une dérogation dure au plus 14 jours ; au-delà, modifiez la configuration"),
    ("is not a room of this school", "cette classe n'existe pas dans l'école"),
    ("why: 1 to 200 characters", "le motif : de 1 à 200 caractères, lu par qui se demande pourquoi"),
    ("ap_only is for deny", "« Wi-Fi seulement » ne va qu'avec une interdiction"),
    ("the gateway's clock is not synchronised", "l'horloge de la passerelle n'est pas à l'heure : donnez le début "
                                                "et la fin"),
    ("expected Unix seconds", "une date et une heure, par exemple 24/11/2026 08:30"),
)
FIELD_FR = {"starts": "Début", "expires": "Fin", "why": "Motif", "room": "Classe", "scope": "Portée",
            "effect": "Décision", "ap_only": "Wi-Fi seulement", "ap": "Wi-Fi"}


def override_message(lang: str, field: str, message: str) -> str:
    if lang != "fr":
        return message
    for english, french in _OVERRIDE_FR:
        if english in message:
            return f"{FIELD_FR.get(field, field)} : {french}."
    return message
