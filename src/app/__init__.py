"""The composition root: wires the Juju and Pebble adapters to ``PeerSyncService``."""
