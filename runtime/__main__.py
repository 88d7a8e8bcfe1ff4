"""Entry point of the engine's command line: ``python -m runtime [--root DIR] COMMAND``."""

from __future__ import annotations

import sys

from runtime.cli import main

if __name__ == "__main__":
    sys.exit(main())
