"""``python -m wmil_core`` is the ``wmil`` command."""

import sys

from wmil_core.cli import main

sys.exit(main())
