"""Entry point: ``python -m runtime.oci``."""

from __future__ import annotations

import sys

from runtime.oci.cli import main

if __name__ == "__main__":
    sys.exit(main())
