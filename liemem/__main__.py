"""`python -m liemem` runs the `liemem` command."""

import sys

from .cli import main

sys.exit(main())
