"""The OCI runtime spec as playground reads it: loading and validating a bundle's
config.json (every field we do not implement is an error naming it), the default config
that ``playground spec`` writes, and the Linux name tables (capabilities, signals, rlimits)
that configs and the CLI refer to.
"""

from __future__ import annotations

from runtime.oci.spec.config import load, read, validate, validate_process
from runtime.oci.spec.default import default_spec
from runtime.oci.spec.tables import (
    CAPABILITIES,
    DEFAULT_CAPABILITIES,
    RLIMITS,
    SIGNALS,
    parse_signal,
)

__all__ = [
    "CAPABILITIES",
    "DEFAULT_CAPABILITIES",
    "RLIMITS",
    "SIGNALS",
    "default_spec",
    "load",
    "parse_signal",
    "read",
    "validate",
    "validate_process",
]
