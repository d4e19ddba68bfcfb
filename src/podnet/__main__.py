"""`python -m podnet …` is the `podnet` command (for a Python without the console script)."""
import sys

from .cli import main

sys.exit(main())
