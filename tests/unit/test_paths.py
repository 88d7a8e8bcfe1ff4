"""runtime.oci.paths against hostile symlink trees: nothing may resolve or be created outside.

Every test runs in a ``jail``: ``tmp_path/root`` is the container root and ``tmp_path/outside``
holds host sentinels. The fixture's teardown asserts that nothing outside the root changed, and
an autouse fixture asserts that no file descriptor leaked. Links that name real host paths
(``/etc``, ``/proc``, ``/``) only ever point at paths that already exist on the host, so a bug
would be caught by the inode checks without creating anything on the machine.
"""

from __future__ import annotations

import errno
import fcntl
import os
import random
import stat
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from runtime.oci import paths


@dataclass
class Jail:
    root: Path
    outside: Path
    fd: int


def _snapshot(top: Path, skip: Path) -> dict[str, tuple[int, int, str]]:
    """Every entry under ``top`` except the ``skip`` subtree: mode, mtime and content."""
    seen: dict[str, tuple[int, int, str]] = {}
    for dirpath, dirnames, filenames in os.walk(top):
        if Path(dirpath) == skip or skip in Path(dirpath).parents:
            dirnames[:] = []
            continue
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            if path == skip:
                continue
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                content = os.readlink(path)
            elif stat.S_ISREG(st.st_mode):
                content = path.read_text()
            else:
                content = ""
            seen[str(path.relative_to(top))] = (st.st_mode, st.st_mtime_ns, content)
    return seen


@pytest.fixture(autouse=True)
def no_fd_leaks() -> Iterator[None]:
    before = sorted(os.listdir("/proc/self/fd"))
    yield
    assert sorted(os.listdir("/proc/self/fd")) == before, "file descriptors leaked"


@pytest.fixture
def jail(tmp_path: Path) -> Iterator[Jail]:
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    root.mkdir()
    (outside / "dir").mkdir(parents=True)
    (outside / "sentinel").write_text("host secret")
    (tmp_path / "marker").write_text("outside marker")
    before = _snapshot(tmp_path, root)
    fd = os.open(root, os.O_PATH | os.O_DIRECTORY)
    yield Jail(root, outside, fd)
    os.close(fd)
    assert _snapshot(tmp_path, root) == before, "something outside the root changed"
    assert (outside / "sentinel").read_text() == "host secret"


def _host_path(jail: Jail, fd: int) -> Path:
    """Where ``fd`` really is, after asserting it is an O_PATH fd inside the root."""
    paths.verify_inside(str(jail.root), fd)
    assert fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_PATH
    return Path(os.readlink(paths.fd_path(fd)))


def _same_file(fd: int, path: Path | str) -> bool:
    a, b = os.fstat(fd), os.stat(path)
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _take(fd: int) -> os.stat_result:
    try:
        return os.fstat(fd)
    finally:
        os.close(fd)


# open_in_root


def test_it_clamps_an_absolute_symlink_at_the_root(jail: Jail) -> None:
    (jail.root / "etc").mkdir()
    (jail.root / "etc" / "hostname").write_text("inside")
    os.symlink("/etc", jail.root / "abs_etc")
    fd = paths.open_in_root(jail.fd, "/abs_etc/hostname", os.O_RDONLY)
    with os.fdopen(fd) as f:
        assert f.read() == "inside"


def test_it_clamps_a_relative_dotdot_escape(jail: Jail) -> None:
    (jail.root / "a" / "b").mkdir(parents=True)
    (jail.root / "marker").write_text("inside marker")
    os.symlink("../../../../../../../..", jail.root / "a" / "b" / "up")
    fd = paths.open_in_root(jail.fd, "a/b/up/marker", os.O_RDONLY)
    with os.fdopen(fd) as f:
        assert f.read() == "inside marker"
    fd = paths.open_in_root(jail.fd, "../../../marker", os.O_RDONLY)
    with os.fdopen(fd) as f:
        assert f.read() == "inside marker"


def test_it_lets_enoent_propagate(jail: Jail) -> None:
    with pytest.raises(FileNotFoundError):
        paths.open_in_root(jail.fd, "missing/file")


def test_it_opens_the_root_for_an_empty_path(jail: Jail) -> None:
    for path in ("", "/", ".", "//./"):
        fd = paths.open_in_root(jail.fd, path)
        assert _host_path(jail, fd) == jail.root
        os.close(fd)


def test_it_refuses_magic_links(jail: Jail) -> None:
    proc_self = os.open("/proc/self", os.O_PATH | os.O_DIRECTORY)
    host_root = os.open("/", os.O_PATH | os.O_DIRECTORY)
    try:
        for fd, path in [(proc_self, "root"), (proc_self, "cwd/x"), (host_root, "proc/self/root")]:
            with pytest.raises(OSError) as info:
                paths.open_in_root(fd, path)
            assert info.value.errno == errno.ELOOP
            with pytest.raises(OSError) as info:
                paths.mkdir_all_in_root(fd, f"{path}/playground-never-created")
            assert info.value.errno == errno.ELOOP
    finally:
        os.close(proc_self)
        os.close(host_root)


def test_it_rejects_embedded_nul_bytes(jail: Jail) -> None:
    (jail.root / "etc").mkdir()
    for call in (paths.open_in_root, paths.mkdir_all_in_root, paths.create_file_in_root):
        with pytest.raises(ValueError, match="null byte"):
            call(jail.fd, "etc\0/../../outside")
    with pytest.raises(ValueError, match="null byte"):
        paths.resolve_in_root(str(jail.root), "etc\0")


# symlink loops


@pytest.mark.parametrize(
    "links",
    [
        {"self": "self"},
        {"a": "b", "b": "a"},
        {"a": "/b", "b": "./c", "c": "../a"},
    ],
)
def test_it_reports_symlink_loops_as_eloop(jail: Jail, links: dict[str, str]) -> None:
    for name, target in links.items():
        os.symlink(target, jail.root / name)
    first = next(iter(links))
    calls: list[Callable[[], object]] = [
        lambda: paths.open_in_root(jail.fd, f"{first}/x"),
        lambda: paths.mkdir_all_in_root(jail.fd, f"{first}/x"),
        lambda: paths.create_file_in_root(jail.fd, first),
        lambda: paths.create_file_in_root(jail.fd, f"{first}/x"),
        lambda: paths.resolve_in_root(str(jail.root), f"{first}/x"),
    ]
    for call in calls:
        with pytest.raises(OSError) as info:
            call()
        assert info.value.errno == errno.ELOOP
    assert sorted(os.listdir(jail.root)) == sorted(links)


def test_resolve_in_root_gives_up_after_255_links(jail: Jail) -> None:
    (jail.root / "end").mkdir()
    for i in range(300):
        os.symlink(f"l{i + 1}" if i < 299 else "end", jail.root / f"l{i}")
    assert paths.resolve_in_root(str(jail.root), "l100") == f"{jail.root}/end"
    with pytest.raises(OSError) as info:
        paths.resolve_in_root(str(jail.root), "l0")
    assert info.value.errno == errno.ELOOP


# CVE-2019-16884 style: /proc or /dev planted as symlinks


def test_a_proc_symlink_to_host_proc_never_reaches_host_proc(jail: Jail) -> None:
    os.symlink("/proc", jail.root / "proc")
    for call in (paths.open_in_root, paths.mkdir_all_in_root, paths.create_file_in_root):
        with pytest.raises(OSError) as info:
            call(jail.fd, "proc/sys/kernel")
        assert info.value.errno == errno.ELOOP
    # Inside the root "/proc" names the link itself: a loop, never the host's procfs.
    with pytest.raises(OSError) as info:
        paths.resolve_in_root(str(jail.root), "proc/self")
    assert info.value.errno == errno.ELOOP


def test_a_dev_symlink_to_host_root_resolves_to_the_container_root(jail: Jail) -> None:
    os.symlink("/", jail.root / "dev")
    fd = paths.mkdir_all_in_root(jail.fd, "/dev/pts")
    assert _host_path(jail, fd) == jail.root / "pts"
    os.close(fd)
    fd = paths.create_file_in_root(jail.fd, "/dev/null")
    assert _host_path(jail, fd) == jail.root / "null"
    assert stat.S_ISREG(_take(fd).st_mode)
    assert paths.resolve_in_root(str(jail.root), "dev/null") == f"{jail.root}/null"


def test_a_proc_symlink_into_the_root_is_followed_inside(jail: Jail) -> None:
    (jail.root / "real_proc").mkdir()
    os.symlink("../../../../real_proc", jail.root / "proc")
    fd = paths.mkdir_all_in_root(jail.fd, "proc/sys")
    assert _host_path(jail, fd) == jail.root / "real_proc" / "sys"
    os.close(fd)


# mkdir_all_in_root


def test_mkdir_all_through_a_symlink_to_an_outside_directory_creates_inside(jail: Jail) -> None:
    os.symlink(jail.outside / "dir", jail.root / "abs")
    os.symlink("../outside/dir", jail.root / "rel")
    fd = paths.mkdir_all_in_root(jail.fd, "abs/sub/deeper")
    inside = Path(f"{jail.root}{jail.outside}/dir/sub/deeper")
    assert _host_path(jail, fd) == inside
    os.close(fd)
    fd = paths.mkdir_all_in_root(jail.fd, "rel/sub")
    assert _host_path(jail, fd) == jail.root / "outside" / "dir" / "sub"
    os.close(fd)
    assert not (jail.outside / "dir" / "sub").exists()


def test_mkdir_all_creates_the_target_of_a_dangling_symlink_inside(jail: Jail) -> None:
    os.symlink(jail.outside / "newdir", jail.root / "mnt")
    os.symlink("../../../../outside/other", jail.root / "rel")
    fd = paths.mkdir_all_in_root(jail.fd, "mnt/x")
    assert _host_path(jail, fd) == Path(f"{jail.root}{jail.outside}/newdir/x")
    os.close(fd)
    fd = paths.mkdir_all_in_root(jail.fd, "rel")
    assert _host_path(jail, fd) == jail.root / "outside" / "other"
    os.close(fd)
    assert (jail.root / "mnt").is_symlink()


def test_mkdir_all_follows_a_chain_of_dangling_symlinks(jail: Jail) -> None:
    os.symlink("/b/one", jail.root / "a")
    os.symlink("../c/two/..", jail.root / "b")
    fd = paths.mkdir_all_in_root(jail.fd, "a/x")
    assert _host_path(jail, fd) == jail.root / "c" / "one" / "x"
    os.close(fd)


def test_mkdir_all_refuses_a_file_where_a_directory_is_needed(jail: Jail) -> None:
    (jail.root / "file").write_text("")
    os.symlink("/file", jail.root / "flink")
    for path in ("file", "file/sub", "flink/sub/deeper", "/./file//"):
        with pytest.raises(NotADirectoryError) as info:
            paths.mkdir_all_in_root(jail.fd, path)
        assert info.value.filename == path
    assert sorted(os.listdir(jail.root)) == ["file", "flink"]


def test_mkdir_all_returns_existing_directories_unchanged(jail: Jail) -> None:
    (jail.root / "etc").mkdir()
    fd = paths.mkdir_all_in_root(jail.fd, "/etc")
    assert _same_file(fd, jail.root / "etc")
    os.close(fd)
    fd = paths.mkdir_all_in_root(jail.fd, "")
    assert _same_file(fd, jail.root)
    os.close(fd)


def test_mkdir_all_handles_deep_paths(jail: Jail) -> None:
    deep = "/".join(f"d{i}" for i in range(120))
    fd = paths.mkdir_all_in_root(jail.fd, deep)
    assert _host_path(jail, fd) == jail.root / deep
    os.close(fd)
    os.symlink("/d0/d1/d2", jail.root / "d0" / "d1" / "d2" / "d3" / "loopish")
    fd = paths.mkdir_all_in_root(jail.fd, "d0/d1/d2/d3/loopish/d3/loopish/new")
    assert _host_path(jail, fd) == jail.root / "d0" / "d1" / "d2" / "new"
    os.close(fd)


def test_mkdir_all_ignores_empty_and_dot_components(jail: Jail) -> None:
    fd = paths.mkdir_all_in_root(jail.fd, "//a/./b//c/.")
    assert _host_path(jail, fd) == jail.root / "a" / "b" / "c"
    os.close(fd)
    fd = paths.open_in_root(jail.fd, "/a//b/./c/")
    assert _same_file(fd, jail.root / "a" / "b" / "c")
    os.close(fd)


def test_mkdir_all_clamps_dotdot_and_follows_kernel_semantics(jail: Jail) -> None:
    fd = paths.mkdir_all_in_root(jail.fd, "../../../x")
    assert _host_path(jail, fd) == jail.root / "x"
    os.close(fd)
    # Like the kernel, "new/.." needs "new" to exist, so it is created on the way.
    fd = paths.mkdir_all_in_root(jail.fd, "new/../../../other/./y/..")
    assert _host_path(jail, fd) == jail.root / "other"
    os.close(fd)
    assert sorted(os.listdir(jail.root)) == ["new", "other", "x"]
    assert os.listdir(jail.root / "other") == ["y"]


# create_file_in_root


def test_create_file_creates_parents_and_an_empty_file(jail: Jail) -> None:
    fd = paths.create_file_in_root(jail.fd, "/etc/./resolv.conf")
    assert _host_path(jail, fd) == jail.root / "etc" / "resolv.conf"
    assert stat.S_ISREG(_take(fd).st_mode)
    assert (jail.root / "etc" / "resolv.conf").read_text() == ""


def test_create_file_does_not_truncate_an_existing_file(jail: Jail) -> None:
    (jail.root / "hosts").write_text("keep me")
    fd = paths.create_file_in_root(jail.fd, "hosts")
    assert _same_file(fd, jail.root / "hosts")
    os.close(fd)
    assert (jail.root / "hosts").read_text() == "keep me"


def test_create_file_on_a_symlink_to_an_outside_file_leaves_it_alone(jail: Jail) -> None:
    os.symlink(jail.outside / "sentinel", jail.root / "abs")
    os.symlink("../../../../outside/sentinel", jail.root / "rel")
    # The absolute target's parent does not exist inside the root, so nothing is created.
    with pytest.raises(FileNotFoundError):
        paths.create_file_in_root(jail.fd, "abs")
    (jail.root / "outside").mkdir()
    fd = paths.create_file_in_root(jail.fd, "rel")
    assert _host_path(jail, fd) == jail.root / "outside" / "sentinel"
    os.close(fd)
    assert sorted(os.listdir(jail.root)) == ["abs", "outside", "rel"]


def test_create_file_uses_an_existing_symlink_target_inside(jail: Jail) -> None:
    (jail.root / "etc").mkdir()
    (jail.root / "etc" / "hosts").write_text("inside")
    os.symlink("/etc/hosts", jail.root / "hosts")
    fd = paths.create_file_in_root(jail.fd, "hosts")
    assert _same_file(fd, jail.root / "etc" / "hosts")
    os.close(fd)


def test_create_file_creates_a_dangling_symlink_target_when_its_parent_exists(
    jail: Jail,
) -> None:
    (jail.root / "run").mkdir()
    (jail.root / "etc").mkdir()
    os.symlink("../run/resolv.conf", jail.root / "etc" / "resolv.conf")
    os.symlink("/etc/resolv.conf", jail.root / "chained")
    fd = paths.create_file_in_root(jail.fd, "chained")
    assert _host_path(jail, fd) == jail.root / "run" / "resolv.conf"
    os.close(fd)


def test_create_file_refuses_directories_and_non_directory_parents(jail: Jail) -> None:
    (jail.root / "dir").mkdir()
    (jail.root / "file").write_text("")
    os.symlink("dir", jail.root / "dirlink")
    for path in ("", "/", "dir", "dirlink", "missing/..", "dir/.."):
        with pytest.raises(IsADirectoryError):
            paths.create_file_in_root(jail.fd, path)
    for path in ("file/x", "file/x/y"):
        with pytest.raises(NotADirectoryError) as info:
            paths.create_file_in_root(jail.fd, path)
        assert info.value.filename == path
    assert sorted(os.listdir(jail.root)) == ["dir", "dirlink", "file", "missing"]


def test_ensure_mount_target_dispatches_on_is_dir(jail: Jail) -> None:
    fd = paths.ensure_mount_target(jail.fd, "/dev/shm", is_dir=True)
    assert stat.S_ISDIR(_take(fd).st_mode)
    fd = paths.ensure_mount_target(jail.fd, "/dev/null", is_dir=False)
    assert stat.S_ISREG(_take(fd).st_mode)
    assert paths.fd_path(7) == "/proc/self/fd/7"


# resolve_in_root and verify_inside


def _build_table_tree(root: Path) -> None:
    (root / "etc").mkdir()
    (root / "etc" / "hosts").write_text("")
    (root / "usr" / "lib").mkdir(parents=True)
    os.symlink("/etc", root / "abs_etc")
    os.symlink("../../../../etc", root / "rel_up")
    os.symlink("../../etc/hosts", root / "usr" / "lib" / "x")
    os.symlink("chain2", root / "chain1")
    os.symlink("/usr/lib", root / "chain2")
    os.symlink(".", root / "dot")
    os.symlink("..", root / "dotdot")
    os.symlink("/../../abs_etc/../usr", root / "usr2")


TABLE = [
    "",
    "/",
    "..",
    "etc",
    "/etc/hosts",
    "abs_etc/hosts",
    "rel_up/hosts",
    "usr/lib/x",
    "chain1/x",
    "chain1/../lib",
    "dot/dot/etc",
    "dotdot/dotdot/etc/hosts",
    "../../etc",
    "usr/../etc//./hosts",
    "usr/lib/../../abs_etc/../etc",
    "usr2/lib/x",
    "abs_etc/../chain1/../../usr2",
]


@pytest.mark.parametrize("path", TABLE)
def test_resolve_in_root_agrees_with_open_in_root(jail: Jail, path: str) -> None:
    _build_table_tree(jail.root)
    real = paths.resolve_in_root(str(jail.root), path)
    assert real == str(jail.root) or real.startswith(f"{jail.root}/")
    fd = paths.open_in_root(jail.fd, path)
    assert _same_file(fd, real)
    os.close(fd)


def test_resolve_in_root_appends_missing_components_lexically(jail: Jail) -> None:
    os.symlink(jail.outside / "dir", jail.root / "abs")
    root = str(jail.root)
    assert paths.resolve_in_root(root, "abs/new/file") == f"{root}{jail.outside}/dir/new/file"
    assert paths.resolve_in_root(root, "missing/../../x") == f"{root}/x"
    assert paths.resolve_in_root(root + "/", "a") == f"{root}/a"


def test_verify_inside_accepts_the_root_and_what_is_under_it(jail: Jail) -> None:
    (jail.root / "sub").mkdir()
    for path in (jail.root, jail.root / "sub"):
        fd = os.open(path, os.O_PATH)
        paths.verify_inside(str(jail.root), fd)
        paths.verify_inside(f"{jail.root}/", fd)
        os.close(fd)


def test_verify_inside_detects_an_fd_outside(jail: Jail) -> None:
    (jail.root / "ab").mkdir()
    (jail.root / "abc").mkdir()
    for outside, root in [
        (jail.outside / "sentinel", jail.root),
        (jail.root / "abc", jail.root / "ab"),
        (jail.root, jail.root / "ab"),
    ]:
        fd = os.open(outside, os.O_PATH)
        try:
            with pytest.raises(OSError) as info:
                paths.verify_inside(str(root), fd)
        finally:
            os.close(fd)
        assert info.value.errno == errno.EXDEV
        assert str(outside) in str(info.value)
        assert str(root) in str(info.value)


# races and random trees


def test_a_concurrent_symlink_swap_never_redirects_creation_outside(jail: Jail) -> None:
    """CVE-2021-30465: a sibling swaps a path component for a symlink while we create."""
    (jail.root / "inner").mkdir()
    os.symlink("/inner", jail.root / "a")
    stop = threading.Event()

    def swap() -> None:
        targets = ["/inner", "../outside/dir", "../../../outside", str(jail.outside)]
        i = 0
        while not stop.is_set():
            tmp = jail.root / f".swap{i % 2}"
            os.symlink(targets[i % len(targets)], tmp)
            os.rename(tmp, jail.root / "a")
            i += 1

    swapper = threading.Thread(target=swap)
    swapper.start()
    try:
        for i in range(300):
            for call in (paths.mkdir_all_in_root, paths.create_file_in_root):
                try:
                    fd = call(jail.fd, f"a/b{i % 3}/c")
                except OSError:
                    continue
                _host_path(jail, fd)
                os.close(fd)
    finally:
        stop.set()
        swapper.join()


def _random_target(rng: random.Random, names: list[str], outside: Path) -> str:
    kind = rng.randrange(6)
    if kind == 0:
        return "/" + "/".join(rng.choices(names, k=rng.randint(0, 3)))
    if kind == 1:
        return "../" * rng.randint(1, 6) + rng.choice(["outside/dir", "outside", "marker", ""])
    if kind == 2:
        return str(outside / rng.choice(["dir", "sentinel", "new"]))
    if kind == 3:
        return rng.choice(["/proc/self/root", "/", ".", "..", "/etc", "/proc"])
    return "/".join(rng.choices([*names, "..", "."], k=rng.randint(1, 4)))


def _random_tree(rng: random.Random, root: Path, outside: Path) -> None:
    names = ["a", "b", "c", "d"]
    dirs = [root]
    for _ in range(rng.randint(4, 20)):
        path = rng.choice(dirs) / rng.choice(names)
        if os.path.lexists(path):
            continue
        kind = rng.random()
        if kind < 0.35:
            path.mkdir()
            dirs.append(path)
        elif kind < 0.5:
            path.write_text("")
        else:
            os.symlink(_random_target(rng, names, outside), path)


def _check_random_path(jail: Jail, root: Path, root_fd: int, path: str) -> None:
    try:
        real: str | None = paths.resolve_in_root(str(root), path)
    except OSError as exc:
        assert exc.errno == errno.ELOOP
        real = None
    assert real is None or real == str(root) or real.startswith(f"{root}/")
    try:
        fd = paths.open_in_root(root_fd, path)
    except OSError:
        pass
    else:
        paths.verify_inside(str(root), fd)
        assert real is not None and _same_file(fd, real), (path, real)
        os.close(fd)
    for call in (paths.mkdir_all_in_root, paths.create_file_in_root):
        try:
            fd = call(root_fd, path)
        except OSError as exc:
            assert exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EISDIR, errno.ENOENT), exc
            continue
        paths.verify_inside(str(root), fd)
        is_dir = stat.S_ISDIR(os.fstat(fd).st_mode)
        assert is_dir == (call is paths.mkdir_all_in_root)
        os.close(fd)


@pytest.mark.parametrize("seed", range(200))
def test_random_trees_never_resolve_outside_the_root(jail: Jail, seed: int) -> None:
    rng = random.Random(seed)
    _random_tree(rng, jail.root, jail.outside)
    names = ["a", "b", "c", "d", "..", ".", "", "x"]
    for _ in range(6):
        path = "/".join(rng.choices(names, k=rng.randint(1, 6)))
        _check_random_path(jail, jail.root, jail.fd, rng.choice(["", "/"]) + path)


def test_existing_targets_cost_well_under_a_millisecond(jail: Jail) -> None:
    targets = ["proc", "dev", "dev/pts", "dev/shm", "dev/mqueue", "sys", "sys/fs/cgroup", "tmp"]
    files = ["etc/resolv.conf", "etc/hosts", "etc/hostname", "dev/null"]
    for path in targets:
        os.close(paths.mkdir_all_in_root(jail.fd, path))
    for path in files:
        os.close(paths.create_file_in_root(jail.fd, path))
    best = float("inf")
    for _ in range(20):
        start = time.perf_counter()
        for path in targets:
            os.close(paths.ensure_mount_target(jail.fd, path, is_dir=True))
        for path in files:
            os.close(paths.ensure_mount_target(jail.fd, path, is_dir=False))
        best = min(best, time.perf_counter() - start)
    assert best < 0.001
