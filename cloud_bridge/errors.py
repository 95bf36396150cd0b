"""Errors at the city side's boundaries. A CityError is permanent (bad
settings, refused credentials, unusable database): the service stops and
says so. Transient trouble (broker gone, link down) never raises; it is
retried with backoff and shown in /healthz and /metrics."""


class CityError(RuntimeError):
    pass


class CitySettingsError(CityError):
    """A setting (flag, environment variable) is missing or wrong."""


class BrokerRefused(CityError):
    """The city broker refused our credentials, client id or subscriptions."""
