"""``python -m lispd.lab demo|up|down``: see :mod:`lispd.lab.cli`."""

import sys

from lispd.lab.cli import main

sys.exit(main())
