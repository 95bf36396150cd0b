"""Shared service infrastructure for the gateway and the city: MQTT
client set-up, HTTP serving and auth, schema migrations. Depends on no
Préau package but `protocol`."""
