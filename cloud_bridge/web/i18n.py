"""The supervision pages' words, in French (the default: the city's
language) and English; the mechanism is common/web/i18n.py's."""

from __future__ import annotations

from common.web.i18n import LANGS, duration, local_time, translate, word_of  # noqa: F401 - the pages take them here

ROLE_WORDS = {"fr": {"supervisor": "supervision", "technician": "technicien", "viewer": "lecture seule"},
              "en": {"supervisor": "supervisor", "technician": "technician", "viewer": "viewer"}}

# A projector's state as the boards report it (firmware/projector.py).
PROJECTOR_WORDS = {
    "fr": {"on": "allumé", "off": "en veille", "warming": "chauffe", "cooling": "refroidissement",
           "error": "en erreur", "unknown": "inconnu"},
    "en": {"on": "on", "off": "standby", "warming": "warming up", "cooling": "cooling down",
           "error": "error", "unknown": "unknown"},
}
RULE_WORDS = {
    "fr": {"gateway_offline": "passerelle hors ligne", "board_offline": "carte de classe hors ligne",
           "projector_error": "vidéoprojecteur en erreur", "lamp_hours": "lampe en fin de vie",
           "ap_outside_session": "Wi-Fi allumé hors séance", "co2": "CO₂ élevé",
           "records_dropped": "enregistrements perdus par la passerelle"},
    "en": {"gateway_offline": "gateway offline", "board_offline": "classroom board offline",
           "projector_error": "projector error", "lamp_hours": "lamp near its end",
           "ap_outside_session": "Wi-Fi on outside a session", "co2": "high CO₂",
           "records_dropped": "records dropped by the gateway"},
}

WORDS: dict[str, dict[str, str]] = {
    "fr": {
        "app": "Préau — supervision de la ville", "login": "Connexion", "login_title": "Connexion à la supervision",
        "user": "Identifiant", "password": "Mot de passe", "sign_in": "Se connecter", "logout": "Se déconnecter",
        "bad_login": "Identifiant ou mot de passe incorrect.",
        "too_many": "Trop d'essais : réessayez dans {s} secondes.",
        "main_nav": "Navigation principale", "lang_other": "English", "you": "Connecté : {login} ({role})",
        "forbidden": "Accès refusé", "forbidden_text": "Votre rôle ne permet pas de voir cette page.",
        "nav_schools": "Écoles", "nav_equipment": "Équipement", "nav_usage": "Utilisation", "nav_alerts": "Alertes",
        "nav_docs": "API", "docs_title": "API de la supervision",
        "schools_title": "Les écoles maintenant", "school": "École", "gateway": "Passerelle",
        "online": "en ligne", "offline": "hors ligne", "never_seen": "jamais vue", "offline_since": "depuis le {t}",
        "rooms_online": "Classes en ligne", "open_alerts": "Alertes ouvertes", "search": "Rechercher une école",
        "filter": "Afficher", "f_all": "toutes", "f_online": "en ligne", "f_offline": "hors ligne",
        "f_alerts": "avec une alerte", "apply": "Filtrer", "no_school": "Aucune école ne correspond.",
        "school_title": "École {school}", "rooms_title": "Les classes", "room": "Classe", "status": "État",
        "session": "Séance", "s_idle": "pas de séance", "s_requesting": "demande en cours", "s_active": "en cours",
        "ap": "Wi-Fi", "ap_on": "allumé", "ap_off": "éteint", "firmware": "Logiciel", "board": "Carte",
        "last_seen": "Vue", "kits_here": "Malles dans cette école", "outages": "Coupures de la passerelle",
        "no_outage": "Aucune coupure enregistrée.", "from": "Depuis", "until": "Jusqu'à",
        "equipment_title": "Équipement", "projectors": "Vidéoprojecteurs", "model": "Modèle",
        "projector_state": "État", "lamp_hours": "Heures de lampe", "boards": "Cartes et logiciels",
        "kits": "Malles d'objets connectés", "kit": "Malle", "kit_type": "Type", "where": "Où",
        "attached": "branchée", "detached": "débranchée", "since": "Depuis", "not_reported": "non signalé",
        "versions": "Versions du logiciel", "count": "Nombre", "none": "Aucune.",
        "usage_title": "Utilisation du trimestre", "quarter": "Trimestre", "show": "Afficher",
        "csv": "Télécharger le CSV", "month": "Mois", "sessions": "Séances", "session_minutes": "Minutes de séance",
        "projector_hours": "Heures de vidéoprojecteur", "ap_minutes": "Minutes de Wi-Fi", "total": "Total",
        "usage_note": "Heures de vidéoprojecteur et minutes de Wi-Fi d'après la télémétrie des classes "
                      "(par intervalle) ; séances d'après les événements des cartes.",
        "alerts_title": "Alertes", "open_title": "Alertes ouvertes", "history_title": "Historique",
        "rules_title": "Règles en vigueur", "rule": "Règle", "opened": "Ouverte", "detail": "Détail",
        "acked": "Acquittée", "closed": "Close", "cleared": "Condition terminée", "by": "Par",
        "ack": "Acquitter", "close": "Clore", "no_alert": "Aucune alerte ouverte.", "no_history": "Aucune alerte close.",
        "mail": "Courriel", "mail_sent": "envoyé", "mail_pending": "en attente", "mail_off": "pas de serveur SMTP",
        "mail_test": "Envoyer un courriel d'essai", "mail_test_done": "Courriel d'essai envoyé.",
        "mail_test_failed": "Courriel d'essai non envoyé : {why}", "acked_notice": "Alerte {id} acquittée.",
        "closed_notice": "Alerte {id} close.", "gone": "Alerte {id} : déjà traitée ou inconnue.",
        "parameters": "Paramètres", "no_rules": "Aucune règle.", "actions": "Actions", "yes": "oui", "no": "non",
        "lamp_life": "Durée de vie (h)", "lamp_per_week": "Heures par semaine", "lamp_due": "Remplacement prévu",
        "not_enough_data": "pas assez de données", "lamp_worn": "à remplacer : durée de vie atteinte",
        "lamp_soon": "dans moins de {weeks} semaines", "lamp_beyond": "dans plus de {years} ans",
        "lamp_note": "Remplacement prévu : la lampe atteint sa durée de vie ({life} h, le seuil de l'alerte "
                     "« lampe en fin de vie ») au rythme des {sample} dernières semaines (heures gagnées par "
                     "semaine de calendrier, vacances comprises) ; signalé quand il tombe dans les {weeks} "
                     "semaines. Moins d'une semaine de relevés, ou moins d'une heure gagnée : pas assez de "
                     "données.",
        "standby_kwh_saved": "kWh économisés par la veille automatique",
        "standby_note": "kWh économisés (estimation) : chaque fois que la carte a mis le vidéoprojecteur en veille "
                        "d'elle-même — à la fin d'une séance, ou hors séance quand il était allumé depuis "
                        "{after} minutes — on compte le temps jusqu'à {end} (heure locale, fin de la journée "
                        "d'école) ou jusqu'à son rallumage s'il vient avant, comme s'il était resté allumé sans "
                        "la carte ; rien après {end}. Puissance : {on} W allumé, {standby} W en veille.",
    },
    "en": {
        "app": "Préau — city supervision", "login": "Log in", "login_title": "Log in to the supervision",
        "user": "Login", "password": "Password", "sign_in": "Log in", "logout": "Log out",
        "bad_login": "Wrong login or password.", "too_many": "Too many tries: try again in {s} seconds.",
        "main_nav": "Main navigation", "lang_other": "Français", "you": "Logged in: {login} ({role})",
        "forbidden": "Forbidden", "forbidden_text": "Your role may not see this page.",
        "nav_schools": "Schools", "nav_equipment": "Equipment", "nav_usage": "Usage", "nav_alerts": "Alerts",
        "nav_docs": "API", "docs_title": "Supervision API",
        "schools_title": "Schools now", "school": "School", "gateway": "Gateway",
        "online": "online", "offline": "offline", "never_seen": "never seen", "offline_since": "since {t}",
        "rooms_online": "Classrooms online", "open_alerts": "Open alerts", "search": "Search a school",
        "filter": "Show", "f_all": "all", "f_online": "online", "f_offline": "offline", "f_alerts": "with an alert",
        "apply": "Filter", "no_school": "No school matches.",
        "school_title": "School {school}", "rooms_title": "Classrooms", "room": "Classroom", "status": "Status",
        "session": "Session", "s_idle": "no session", "s_requesting": "requesting", "s_active": "running",
        "ap": "Wi-Fi", "ap_on": "on", "ap_off": "off", "firmware": "Firmware", "board": "Board",
        "last_seen": "Seen", "kits_here": "Kits in this school", "outages": "Gateway outages",
        "no_outage": "No outage recorded.", "from": "From", "until": "Until",
        "equipment_title": "Equipment", "projectors": "Projectors", "model": "Model",
        "projector_state": "State", "lamp_hours": "Lamp hours", "boards": "Boards and firmware",
        "kits": "Connected-object kits", "kit": "Kit", "kit_type": "Type", "where": "Where",
        "attached": "plugged in", "detached": "unplugged", "since": "Since", "not_reported": "not reported",
        "versions": "Firmware versions", "count": "Count", "none": "None.",
        "usage_title": "Usage for the quarter", "quarter": "Quarter", "show": "Show",
        "csv": "Download the CSV", "month": "Month", "sessions": "Sessions", "session_minutes": "Session minutes",
        "projector_hours": "Projector hours", "ap_minutes": "Wi-Fi minutes", "total": "Total",
        "usage_note": "Projector hours and Wi-Fi minutes from the classrooms' telemetry (per interval); sessions "
                      "from the boards' events.",
        "alerts_title": "Alerts", "open_title": "Open alerts", "history_title": "History",
        "rules_title": "Rules in force", "rule": "Rule", "opened": "Opened", "detail": "Detail",
        "acked": "Acknowledged", "closed": "Closed", "cleared": "Condition over", "by": "By",
        "ack": "Acknowledge", "close": "Close", "no_alert": "No open alert.", "no_history": "No closed alert.",
        "mail": "E-mail", "mail_sent": "sent", "mail_pending": "pending", "mail_off": "no SMTP server",
        "mail_test": "Send a test e-mail", "mail_test_done": "Test e-mail sent.",
        "mail_test_failed": "Test e-mail not sent: {why}", "acked_notice": "Alert {id} acknowledged.",
        "closed_notice": "Alert {id} closed.", "gone": "Alert {id}: already handled or unknown.",
        "parameters": "Parameters", "no_rules": "No rule.", "actions": "Actions", "yes": "yes", "no": "no",
        "lamp_life": "Lamp life (h)", "lamp_per_week": "Hours per week", "lamp_due": "Replacement due",
        "not_enough_data": "not enough data", "lamp_worn": "replace: lamp life reached",
        "lamp_soon": "within {weeks} weeks", "lamp_beyond": "in more than {years} years",
        "lamp_note": "Replacement due: when the lamp reaches its life ({life} h, the threshold of the \"lamp "
                     "near its end\" alert) at the rate of the last {sample} weeks (hours gained per calendar "
                     "week, holidays included); flagged when it falls within {weeks} weeks. Less than a week of "
                     "readings, or less than an hour gained: not enough data.",
        "standby_kwh_saved": "kWh saved by automatic standby",
        "standby_note": "kWh saved (an estimate): each time the board put the projector in standby by itself — at "
                        "a session's end, or outside a session once it had been on for {after} minutes — the time "
                        "until {end} (local time, the school day's end) or until it came on again, if sooner, is "
                        "counted as if it had stayed on without the board; nothing after {end}. Power: {on} W on, "
                        "{standby} W in standby.",
    },
}


def t(lang: str, key: str, **values: object) -> str:
    return translate(WORDS, lang, key, **values)


def role_word(lang: str, role: str) -> str:
    return word_of(ROLE_WORDS, lang, role)


def rule_word(lang: str, rule: str) -> str:
    return word_of(RULE_WORDS, lang, rule)


def projector_word(lang: str, state: str) -> str:
    """A projector's state in words; an unknown one as it came."""
    return word_of(PROJECTOR_WORDS, lang, state)
