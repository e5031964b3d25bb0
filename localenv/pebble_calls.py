"""Counting what the charm asks Pebble, under ``ops.testing``: the figure the hook-economy
benchmarks and the tests hold to (a quiet follower asks nothing).

``ops.testing``'s Pebble client is scenario's ``_MockPebbleClient``, which overrides some of
ops' testing client's methods (``exec``, ``get_plan``, ``add_layer``...). Every public method
of the class in place (its own or inherited, including a test double's overrides) is wrapped,
so an ``exec`` counts like a pull. Only the outermost call counts: the testing client calls
itself where a real Pebble works server-side (``send_signal`` asks ``get_services``, ``push``
makes parents), and those are not requests a real Pebble would receive.
"""

import collections
import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def counting_pebble_calls() -> Iterator[collections.Counter[str]]:
    """Within the block, the charm's Pebble calls by method name; the class is restored after."""
    from scenario import mocking

    client = mocking._MockPebbleClient
    counts: collections.Counter[str] = collections.Counter()
    depth = [0]
    originals = {}
    for name in dir(client):
        method = getattr(client, name)
        if name.startswith("_") or not callable(method) or isinstance(method, property):
            continue
        originals[name] = client.__dict__.get(name)

        def counted(self, *args, __name=name, __method=method, **kwargs):
            if depth[0] == 0:
                counts[__name] += 1
            depth[0] += 1
            try:
                return __method(self, *args, **kwargs)
            finally:
                depth[0] -= 1

        setattr(client, name, counted)
    try:
        yield counts
    finally:
        for name, own in originals.items():
            if own is None:
                delattr(client, name)  # inherited: the base class's method shows through again
            else:
                setattr(client, name, own)
