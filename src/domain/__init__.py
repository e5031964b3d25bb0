"""The framework-free core of the pgbouncer-k8s charm.

Nothing in this package imports ops, cattrs, Pebble or any I/O module: it holds plain values
(the pgbouncer files, the peer relation's data, the charm config), the rules that validate
them, and ``PeerSyncService``, which turns what a unit sees into the ordered effects its
adapters carry out.
"""
