"""``python -m driftloop`` runs the CLI."""

import sys

from driftloop.cli import main

sys.exit(main())
