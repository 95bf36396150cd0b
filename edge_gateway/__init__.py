"""Préau school gateway: registry, decisions, history, city link, API."""

VERSION = "0.1.0"
