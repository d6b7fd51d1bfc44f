"""Shared test setup: the package is imported from scripts/."""

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

# The multi-host suite (tests/multihost) boots four containers. It is not yet
# part of the default run: after merging the mail TLS work, mail delivery to
# the mail container is refused (issue 11 stays open). Run it with
# SOP_MULTIHOST=1 ./scripts/run-tests.
collect_ignore = [] if os.environ.get("SOP_MULTIHOST") == "1" else ["multihost"]
