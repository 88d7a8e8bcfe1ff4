"""Container cgroups on cgroup v1, v2 and hybrid hosts, behind one interface.

``open_cgroup`` probes the host's mounts once (cached) and returns a ``CgroupManager`` that
creates the cgroup, applies OCI ``linux.resources``, adds processes, freezes, kills, reads
counters and removes it again. ``FakeCgroup`` stands in for it in tests of the layers above.
"""

from __future__ import annotations

import logging

from runtime.oci.cgroups.base import DEFAULT_PARENT, CgroupFs, CgroupManager, CgroupStats
from runtime.oci.cgroups.fake import FakeCgroup
from runtime.oci.cgroups.layout import CgroupLayout, Hierarchies, probe_hierarchies, probe_layout
from runtime.oci.cgroups.manager import HostCgroup, open_cgroup

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_PARENT",
    "CgroupFs",
    "CgroupLayout",
    "CgroupManager",
    "CgroupStats",
    "FakeCgroup",
    "Hierarchies",
    "HostCgroup",
    "open_cgroup",
    "probe_hierarchies",
    "probe_layout",
]
