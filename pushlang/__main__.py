"""``python -m pushlang``."""

import sys

from pushlang.cli import main

sys.exit(main())
