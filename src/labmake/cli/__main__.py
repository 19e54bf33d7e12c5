"""``python -m labmake.cli``: the ``labmake`` command."""

import sys

from labmake.cli import main

sys.exit(main())
