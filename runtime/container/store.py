"""Container records on disk (``<containers_dir>/<id>/container.json``), name and id-prefix
lookup. Writes are atomic; the daemon is the only writer."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil

from runtime.container.model import ContainerRecord
from runtime.errors import AmbiguousId, ContainerNotFound, InvalidArgument, NameConflict

RECORD = "container.json"
_NAME_RE = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
_ADJECTIVES = ("brave", "calm", "eager", "fond", "keen", "merry", "quiet", "swift", "warm", "wise")
_NOUNS = ("curie", "darwin", "euler", "gauss", "hopper", "lovelace", "noether", "turing")


class ContainerStore:
    def __init__(self, containers_dir: str) -> None:
        self.dir = containers_dir
        self._cache: dict[str, ContainerRecord] = {}

    def path(self, container_id: str, *parts: str) -> str:
        return os.path.join(self.dir, container_id, *parts)

    def new_id(self) -> str:
        return secrets.token_hex(32)

    def check_name(self, name: str | None) -> str:
        if name is None:
            names = {r.name for r in self.all()}
            while True:
                candidate = f"{secrets.choice(_ADJECTIVES)}_{secrets.choice(_NOUNS)}"
                candidate += f"_{secrets.randbelow(1000)}"
                if candidate not in names:
                    return candidate
        if not _NAME_RE.match(name):
            raise InvalidArgument("name", f"invalid container name {name!r}")
        name = name.lstrip("/")
        for record in self.all():
            if record.name == name:
                raise NameConflict(name, record.id)
        return name

    def save(self, record: ContainerRecord) -> None:
        os.makedirs(self.path(record.id), mode=0o700, exist_ok=True)
        target = self.path(record.id, RECORD)
        tmp = f"{target}.tmp"
        with open(tmp, "w") as f:
            f.write(record.to_json())
        os.replace(tmp, target)
        self._cache[record.id] = record

    def load(self, container_id: str) -> ContainerRecord:
        cached = self._cache.get(container_id)
        if cached is not None:
            return cached
        try:
            with open(self.path(container_id, RECORD)) as f:
                record = ContainerRecord.from_json(f.read())
        except (FileNotFoundError, NotADirectoryError):
            raise ContainerNotFound(container_id) from None
        self._cache[container_id] = record
        return record

    def all(self) -> list[ContainerRecord]:
        try:
            ids = os.listdir(self.dir)
        except FileNotFoundError:
            return []
        out = []
        for cid in ids:
            with contextlib.suppress(ContainerNotFound, ValueError, KeyError):
                out.append(self.load(cid))
        return sorted(out, key=lambda r: r.created, reverse=True)

    def resolve(self, ref: str) -> ContainerRecord:
        """By full id, unique id prefix, or name (Docker's rules)."""
        if len(ref) == 64 and os.path.exists(self.path(ref, RECORD)):
            return self.load(ref)
        records = self.all()
        for record in records:
            if record.name == ref.lstrip("/"):
                return record
        matches = [r for r in records if r.id.startswith(ref)] if ref else []
        if len(matches) > 1:
            raise AmbiguousId(ref)
        if not matches:
            raise ContainerNotFound(ref)
        return matches[0]

    def remove(self, container_id: str) -> None:
        self._cache.pop(container_id, None)
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(self.path(container_id))
