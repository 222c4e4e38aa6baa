"""`python -m sharedbridge`: the sharedbridge command line (sharedbridge.cli, docs/cli.md)."""

import sys

from .cli import main

sys.exit(main())
