"""``python -m app`` is the ``soloist`` command."""

import sys

from app.cli import main

sys.exit(main())
