"""Errors at the city side's boundaries. A CityError is permanent (bad
configuration, refused credentials, unusable database): the service stops
and says so. Transient trouble (broker gone, link down) never raises; it is
retried with backoff and shown in /healthz and /metrics."""


class CityError(RuntimeError):
    pass


class ConfigError(CityError):
    pass


class BrokerRefused(CityError):
    """The city broker refused our credentials or client id."""
