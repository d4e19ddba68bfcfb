"""`python -m podnet.cli …` (the lab and the tests run the CLI this way inside namespaces)."""
import sys

from . import main

sys.exit(main())
