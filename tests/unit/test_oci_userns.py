"""The OCI runtime's preparations for a user namespace that need no root: whose uid the
namespace is created as, and where sources are staged."""

from __future__ import annotations

import os

import pytest

from runtime.oci import userns


def _mapped(uid_host: int, gid_host: int) -> dict[str, object]:
    return {
        "linux": {
            "uidMappings": [{"containerID": 0, "hostID": uid_host, "size": 65536}],
            "gidMappings": [{"containerID": 0, "hostID": gid_host, "size": 65536}],
        }
    }


def test_the_owner_is_the_host_id_of_the_namespaces_root() -> None:
    assert userns.owner(_mapped(1 << 30, (1 << 30) + 7)) == (1 << 30, (1 << 30) + 7)
    shifted = {
        "linux": {
            "uidMappings": [{"containerID": 1, "hostID": 5000, "size": 10}],
            "gidMappings": [{"containerID": 0, "hostID": 7000, "size": 10}],
        }
    }
    assert userns.owner(shifted) is None  # root is not mapped: stay root
    assert userns.owner(_mapped(0, 0)) is None  # root mapped to root: nothing to become
    assert userns.owner({}) is None


def test_staging_skips_folders_holding_hooks_or_modules(monkeypatch: pytest.MonkeyPatch) -> None:
    existing = [c for c in userns.STAGING_CANDIDATES if os.path.isdir(c)]
    assert len(existing) >= 2, "this host has too few of the staging candidates"
    config = {"hooks": {"createContainer": [{"path": f"{existing[0]}/hooks/h.sh"}]}}
    assert userns._staging_dir(config) == existing[1]
    monkeypatch.setattr("sys.path", [f"{c}/lib" for c in existing])
    with pytest.raises(userns.UsernsError, match="no folder to stage"):
        userns._staging_dir({})
