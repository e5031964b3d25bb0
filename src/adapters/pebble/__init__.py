"""Pebble adapters: the pgbouncer container as the domain's ``WorkloadPort``."""
