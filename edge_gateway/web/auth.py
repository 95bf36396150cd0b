"""Who is asking, and may they: the gateway's use of the one check of
common/web/auth.py (sessions, CSRF, log-in limiter, `Allow(roles...)` on
every route, walked by tests/test_gateway_auth.py).

Two ways in: a machine client (a script, `preau board`, the city's tools)
sends a bearer token (the director's or the viewer's, edge_gateway/api.py's
ApiSettings); a person logs in with an account (edge_gateway/accounts.py)
and gets a session in a `__Host-preau-session` cookie."""

from common.web.auth import (  # noqa: F401 - the gateway's pages and API take them from here
    CSRF_FIELD,
    CSRF_HEADER,
    IP_LIMIT,
    LOGIN_LIMIT,
    SAFE_METHODS,
    SESSION_S,
    Access,
    Allow,
    LoginLimiter,
    NeedsLogin,
    PageForbidden,
    Principal,
    Session,
    Sessions,
    actor,
    check_csrf,
    form_of,
    login_url,
    safe_next,
)

TOKEN_ACCOUNTS = {"director": "token-director", "viewer": "token-viewer"}  # what the audit names for a bearer
