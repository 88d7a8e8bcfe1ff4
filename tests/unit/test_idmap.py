"""User id ranges for containers: allocation and mappings."""

from __future__ import annotations

import pytest

from runtime.container import idmap
from runtime.errors import ContainerRuntimeError

SIZE = 65536


def test_the_lowest_free_range_is_given() -> None:
    first = idmap.FIRST_BASE
    assert idmap.allocate([], SIZE) == first
    assert idmap.allocate([first], SIZE) == first + SIZE
    assert idmap.allocate([first, first + 2 * SIZE], SIZE) == first + SIZE
    assert idmap.allocate([0, first + SIZE], SIZE) == first  # 0: a container without userns


def test_a_prepared_free_range_is_preferred() -> None:
    first = idmap.FIRST_BASE
    assert idmap.allocate([], SIZE, prefer=[first + 3 * SIZE]) == first + 3 * SIZE
    assert idmap.allocate([first + 3 * SIZE], SIZE, prefer=[first + 3 * SIZE]) == first


def test_ranges_stay_below_the_invalid_id() -> None:
    bases = list(range(idmap.FIRST_BASE, idmap.LAST_ID - SIZE + 2, SIZE))
    assert idmap.allocate(bases[:-1], SIZE) == bases[-1]
    assert bases[-1] + SIZE - 1 <= idmap.LAST_ID
    with pytest.raises(ContainerRuntimeError, match="no free range"):
        idmap.allocate(bases, SIZE)


def test_the_mappings_map_root_to_the_base() -> None:
    assert idmap.IdRange(1 << 30, SIZE).mappings() == [
        {"containerID": 0, "hostID": 1 << 30, "size": SIZE}
    ]
