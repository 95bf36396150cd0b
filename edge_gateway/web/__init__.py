"""The school gateway's pages: log-in and roles (auth.py), the live
classroom grid over server-sent events (live.py), overrides, the audit
log, the boards and the week's plan (pages.py), the week's periods edited
in the page (week.py), in French by default and English (i18n.py). Every
asset is in static/, shipped with the package: a school's network may not
reach the internet."""
