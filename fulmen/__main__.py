"""``python -m fulmen``: the ``fulmen`` command (``python -m fulmen run train.py ...``, ``python -m fulmen fit ...``)."""

import sys

from fulmen.commands import main

sys.exit(main())
