"""The attacker's suite: one engine per module (every container in it gets the default
profile), and the static C probe, compiled once per session."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.engine_fixtures import EngineProcess, running_engine
from tests.security.attack import Attacker, build_probe


@pytest.fixture(scope="session")
def probe_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("gcc") is None:
        pytest.fail("gcc is needed to build the security probe: run `make deps`")
    directory = tmp_path_factory.mktemp("probe")
    build_probe(directory)
    return directory


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineProcess]:
    with running_engine(tmp_path_factory.mktemp("attacked")) as eng:
        yield eng


@pytest.fixture(scope="module")
def attacker(engine: EngineProcess, probe_dir: Path) -> Attacker:
    return Attacker(engine, probe_dir)
