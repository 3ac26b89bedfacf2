"""``python -m evaluation``: the same as ``python -m evaluation``."""

import sys

from .evaluate import cli

sys.exit(cli())
