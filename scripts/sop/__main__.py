"""`python -m sop`: the `sop` command without its console script (the Apply
workflow runs the checkout's code with the controller's venv)."""

import sys

from .cli import main

sys.exit(main())
