"""The demonstration run by ``make demo``: three units of the charm on real pgbouncer.

``python -m demo`` from the project's root. The charm's code lives in ``src/`` (and ``lib/``),
which is put on ``sys.path`` here, as charmcraft's entrypoint and pytest do.
"""

import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
for _path in (ROOT, ROOT / "lib", ROOT / "src"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))
