"""``python -m lispd`` runs the ``lispd`` command."""

import sys

from lispd.cli.main import main

sys.exit(main())
