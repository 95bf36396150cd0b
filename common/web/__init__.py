"""What the services' pages share, whatever the service: accounts with
argon2 hashes (accounts.py), sessions, CSRF, the log-in limiter and the
`Allow(roles...)` dependency (auth.py), the security headers and the body
limit (http.py), the HTML layout and escaping (render.py), the language
mechanism (i18n.py) and the log-in form (login.py). Roles, words, pages
and navigation are each service's own: the school gateway's in
edge_gateway/web/, the city's in cloud_bridge/web/."""
