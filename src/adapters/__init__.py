"""Adapters: the ports of ``domain.ports`` carried out by Juju, Pebble or local processes."""
