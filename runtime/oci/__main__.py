"""Entry point: ``python -m runtime.oci``.

Commands that fork container processes re-execute from a sealed interpreter copy before
anything else is imported, so the (slow) imports happen once.
"""

from __future__ import annotations

import sys

_SPAWNING = ("create", "run", "exec")

if __name__ == "__main__":
    if any(arg in _SPAWNING for arg in sys.argv[1:]):
        from runtime.oci import selfexe

        selfexe.reexec_sealed()
    from runtime.oci.cli import main

    sys.exit(main())
