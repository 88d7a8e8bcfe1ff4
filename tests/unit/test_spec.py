"""runtime.oci.spec: config.json validation, the default config and the Linux name tables.

Most tests start from ``minimal()``, a small valid config written out by hand, change one field
with ``put`` and check that ``InvalidSpec`` names exactly that field. The tests of
``default_spec()`` need runtime.oci.seccomp, which supplies its seccomp section.
"""

from __future__ import annotations

import copy
import json
import re
import resource
import signal
import timeit
from pathlib import Path
from typing import Any

import pytest

from runtime.errors import InvalidSpec
from runtime.oci import spec

NAMESPACES = ("pid", "network", "ipc", "uts", "mount")


def minimal() -> dict[str, Any]:
    return {
        "ociVersion": "1.1.0",
        "root": {"path": "rootfs"},
        "process": {"user": {"uid": 0, "gid": 0}, "args": ["sh"], "cwd": "/"},
        "linux": {"namespaces": [{"type": kind} for kind in NAMESPACES]},
    }


def put(config: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """Set ``value`` at a dotted path like "mounts[0].options", creating objects on the way."""
    *parents, last = re.findall(r"[^.\[\]]+", path)
    node: Any = config
    for key in parents:
        node = node[int(key)] if key.isdigit() else node.setdefault(key, {})
    if last.isdigit():
        node[int(last)] = value
    else:
        node[last] = value
    return config


def with_namespaces(*kinds: str, **paths: str) -> dict[str, Any]:
    namespaces = [{"type": kind} for kind in kinds]
    namespaces += [{"type": kind, "path": path} for kind, path in paths.items()]
    return put(minimal(), "linux.namespaces", namespaces)


def rejects(config: Any, field: str, *words: str) -> InvalidSpec:
    with pytest.raises(InvalidSpec) as info:
        spec.validate(config)
    assert info.value.field == field, info.value
    for word in words:
        assert word in info.value.reason, info.value
    return info.value


def test_minimal_config_validates_without_warnings() -> None:
    assert spec.validate(minimal()) == []


# -- default_spec ---------------------------------------------------------------------------


def test_default_spec_validates_without_warnings() -> None:
    assert spec.validate(spec.default_spec()) == []


def test_default_spec_round_trips_through_json() -> None:
    config = spec.default_spec()
    again = json.loads(json.dumps(config))
    assert again == config
    assert spec.validate(again) == []


def test_default_spec_returns_a_fresh_dict_each_call() -> None:
    first = spec.default_spec()
    first["process"]["capabilities"]["bounding"].append("CAP_SYS_ADMIN")
    first["linux"]["maskedPaths"].clear()
    second = spec.default_spec()
    assert "CAP_SYS_ADMIN" not in second["process"]["capabilities"]["bounding"]
    assert second["linux"]["maskedPaths"]


def test_default_spec_has_the_shape_of_runc_spec() -> None:
    config = spec.default_spec()
    process = config["process"]
    assert config["ociVersion"] == "1.1.0"
    assert config["root"] == {"path": "rootfs", "readonly": True}
    assert config["hostname"] == "playground"
    assert process["terminal"] is True
    assert process["args"] == ["sh"]
    assert process["cwd"] == "/"
    assert process["user"] == {"uid": 0, "gid": 0}
    assert "TERM=xterm" in process["env"]
    assert any(entry.startswith("PATH=/") for entry in process["env"])
    assert process["noNewPrivileges"] is True
    assert process["rlimits"] == [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}]
    kinds = [ns["type"] for ns in config["linux"]["namespaces"]]
    assert sorted(kinds) == sorted(["pid", "network", "ipc", "uts", "mount", "cgroup"])


def test_default_spec_mounts_match_runc_with_hardened_proc() -> None:
    mounts = {m["destination"]: m for m in spec.default_spec()["mounts"]}
    assert list(mounts) == [
        "/proc",
        "/dev",
        "/dev/pts",
        "/dev/shm",
        "/dev/mqueue",
        "/sys",
        "/sys/fs/cgroup",
    ]
    assert mounts["/dev"]["options"] == ["nosuid", "strictatime", "mode=755", "size=65536k"]
    assert {"newinstance", "ptmxmode=0666", "mode=0620", "gid=5"} <= set(
        mounts["/dev/pts"]["options"]
    )
    assert {"noexec", "nosuid", "nodev", "mode=1777", "size=65536k"} <= set(
        mounts["/dev/shm"]["options"]
    )
    assert mounts["/sys"]["type"] == "sysfs" and "ro" in mounts["/sys"]["options"]
    cgroup = mounts["/sys/fs/cgroup"]
    assert cgroup["type"] == "cgroup" and "ro" in cgroup["options"]
    assert {"nosuid", "noexec", "nodev"} <= set(mounts["/proc"]["options"])


def test_default_spec_keeps_only_kill_and_net_bind_service() -> None:
    caps = spec.default_spec()["process"]["capabilities"]
    minimal_set = ["CAP_KILL", "CAP_NET_BIND_SERVICE"]
    assert caps == {
        "bounding": minimal_set,
        "effective": minimal_set,
        "permitted": minimal_set,
        "inheritable": [],
        "ambient": [],
    }


def test_default_spec_masks_runc_paths_and_dockers_additions() -> None:
    linux = spec.default_spec()["linux"]
    runc_masked = {
        "/proc/acpi",
        "/proc/asound",
        "/proc/kcore",
        "/proc/keys",
        "/proc/latency_stats",
        "/proc/timer_list",
        "/proc/timer_stats",
        "/proc/sched_debug",
        "/sys/firmware",
        "/proc/scsi",
    }
    extra = {"/proc/interrupts", "/sys/devices/virtual/powercap"}
    assert runc_masked | extra <= set(linux["maskedPaths"])
    assert set(linux["readonlyPaths"]) == {
        "/proc/bus",
        "/proc/fs",
        "/proc/irq",
        "/proc/sys",
        "/proc/sysrq-trigger",
    }


def test_default_spec_denies_all_devices_and_limits_pids() -> None:
    resources = spec.default_spec()["linux"]["resources"]
    assert resources["devices"] == [{"allow": False, "access": "rwm"}]
    assert resources["pids"] == {"limit": 1024}


def test_default_spec_seccomp_section_is_an_oci_profile() -> None:
    profile = spec.default_spec()["linux"]["seccomp"]
    assert isinstance(profile, dict)
    assert isinstance(profile["defaultAction"], str)


def test_validating_the_default_spec_is_fast() -> None:
    # The target is 0.3 ms; the bound leaves room for a loaded CI machine.
    config = spec.default_spec()
    best = min(timeit.repeat(lambda: spec.validate(config), number=50, repeat=5)) / 50
    assert best < 0.002


# -- load -----------------------------------------------------------------------------------


def test_load_returns_the_validated_config(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps(minimal()))
    assert spec.load(str(tmp_path)) == minimal()


def test_load_rejects_a_bundle_without_config_json(tmp_path: Path) -> None:
    with pytest.raises(InvalidSpec) as info:
        spec.load(str(tmp_path))
    assert info.value.field == "config.json"
    assert str(tmp_path) in info.value.reason


@pytest.mark.parametrize("content", ["{", "not json", "\xff\xfe"])
def test_load_rejects_a_config_that_is_not_json(tmp_path: Path, content: str) -> None:
    (tmp_path / "config.json").write_bytes(content.encode("latin-1"))
    with pytest.raises(InvalidSpec) as info:
        spec.load(str(tmp_path))
    assert info.value.field == "config.json"
    assert "not valid JSON" in info.value.reason


def test_load_rejects_json_that_is_not_an_object(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("[1, 2]")
    with pytest.raises(InvalidSpec) as info:
        spec.load(str(tmp_path))
    assert info.value.field == "config.json"


def test_load_validates_and_names_the_bad_field(tmp_path: Path) -> None:
    config = put(minimal(), "process.cwd", "relative")
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(InvalidSpec) as info:
        spec.load(str(tmp_path))
    assert info.value.field == "process.cwd"


# -- top level ------------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["ociVersion", "root", "process"])
def test_it_requires_the_top_level_fields(field: str) -> None:
    config = minimal()
    del config[field]
    rejects(config, field, "required")


@pytest.mark.parametrize("version", ["2.0.0", "0.5.0", 1, ""])
def test_it_rejects_an_oci_version_other_than_1x(version: Any) -> None:
    rejects(put(minimal(), "ociVersion", version), "ociVersion")


def test_it_rejects_an_empty_root_path() -> None:
    rejects(put(minimal(), "root.path", ""), "root.path")


def test_it_treats_null_as_absent() -> None:
    config = put(minimal(), "hostname", None)
    put(config, "linux.intelRdt", None)
    put(config, "process.user.additionalGids", None)
    assert spec.validate(config) == []


def test_it_rejects_a_missing_required_field_given_as_null() -> None:
    rejects(put(minimal(), "process.cwd", None), "process.cwd", "required")


def test_it_reports_the_first_problem_in_document_order() -> None:
    config = put(minimal(), "process.cwd", "relative")
    put(config, "process.user.uid", -1)
    rejects(config, "process.user.uid")


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("colour", "colour"),
        ("process.shell", "process.shell"),
        ("process.user.name", "process.user.name"),
        ("root.options", "root.options"),
        ("linux.seccomp.comment", "linux.seccomp.comment"),
        ("hooks.preStart", "hooks.preStart"),
        ("weird-key", '["weird-key"]'),
    ],
)
def test_it_ignores_unknown_properties_with_a_warning_naming_their_path(
    path: str, field: str
) -> None:
    """The OCI spec: a runtime MUST NOT fail on a property it does not know."""
    config = put(minimal(), path, {})
    if path.startswith("linux.seccomp."):
        put(config, "linux.seccomp.defaultAction", "SCMP_ACT_ALLOW")
    warnings = spec.validate(config)
    assert any(w.startswith(f"{field}: unknown property") for w in warnings), warnings


def test_it_rejects_a_spec_field_it_does_not_implement() -> None:
    config = put(minimal(), "linux.resources.memory.checkBeforeUpdate", True)
    rejects(config, "linux.resources.memory.checkBeforeUpdate", "not supported")


@pytest.mark.parametrize(
    "path",
    [
        "solaris",
        "windows",
        "vm",
        "zos",
        "process.scheduler",
        "process.ioPriority",
        "process.execCPUAffinity",
        "process.commandLine",
        "process.user.username",
        "linux.intelRdt",
        "linux.personality",
        "linux.timeOffsets",
        "linux.memoryPolicy",
        "linux.netDevices",
        "linux.resources.rdma",
    ],
)
def test_it_rejects_fields_playground_does_not_implement(path: str) -> None:
    rejects(put(minimal(), path, {"x": 1}), path, "not supported")


def test_it_rejects_a_config_that_is_not_an_object() -> None:
    rejects(["not", "an", "object"], "config.json", "object")


def test_it_rejects_annotations_that_are_not_strings() -> None:
    rejects(put(minimal(), "annotations", {"org.example": 1}), 'annotations["org.example"]')


def test_it_accepts_string_annotations() -> None:
    assert spec.validate(put(minimal(), "annotations", {"org.example/key": "v"})) == []


# -- hostname and namespaces ----------------------------------------------------------------


@pytest.mark.parametrize("field", ["hostname", "domainname"])
def test_it_rejects_a_hostname_without_a_uts_namespace(field: str) -> None:
    config = put(with_namespaces("pid", "mount"), field, "box")
    rejects(config, field, "uts namespace")


def test_it_accepts_a_hostname_in_a_joined_uts_namespace() -> None:
    config = put(with_namespaces("mount", uts="/proc/1/ns/uts"), "hostname", "box")
    assert spec.validate(config) == []


def test_it_rejects_a_hostname_longer_than_the_kernel_allows() -> None:
    rejects(put(minimal(), "hostname", "h" * 65), "hostname", "64")


def test_it_requires_a_mount_namespace() -> None:
    rejects(with_namespaces("pid", "uts"), "linux.namespaces", "mount namespace")


def test_it_rejects_time_namespaces_as_unsupported() -> None:
    rejects(with_namespaces("mount", "time"), "linux.namespaces[1].type", "not supported")


def test_it_rejects_an_unknown_namespace_type() -> None:
    rejects(with_namespaces("mount", "net"), "linux.namespaces[1].type", "'net'")


def test_it_rejects_a_duplicate_namespace() -> None:
    rejects(with_namespaces("mount", "pid", "pid"), "linux.namespaces[2].type", "duplicate")


def test_it_rejects_a_relative_namespace_path() -> None:
    rejects(with_namespaces("mount", pid="proc/1/ns/pid"), "linux.namespaces[1].path")


# -- user namespaces ------------------------------------------------------------------------

MAPPING = [{"containerID": 0, "hostID": 100000, "size": 65536}]


def test_it_accepts_a_new_user_namespace_with_mappings() -> None:
    config = with_namespaces("mount", "user")
    put(config, "linux.uidMappings", MAPPING)
    put(config, "linux.gidMappings", MAPPING)
    assert spec.validate(config) == []


def test_it_rejects_a_new_user_namespace_without_uid_mappings() -> None:
    rejects(with_namespaces("mount", "user"), "linux.uidMappings", "required")


def test_it_rejects_a_new_user_namespace_without_gid_mappings() -> None:
    config = put(with_namespaces("mount", "user"), "linux.uidMappings", MAPPING)
    rejects(config, "linux.gidMappings", "required")


def test_it_rejects_mappings_without_a_user_namespace() -> None:
    rejects(put(minimal(), "linux.uidMappings", MAPPING), "linux.uidMappings", "user namespace")


def test_it_accepts_a_joined_user_namespace_without_mappings() -> None:
    assert spec.validate(with_namespaces("mount", user="/proc/1/ns/user")) == []


def test_it_rejects_mappings_for_a_joined_user_namespace() -> None:
    config = put(with_namespaces("mount", user="/proc/1/ns/user"), "linux.uidMappings", MAPPING)
    rejects(config, "linux.uidMappings", "existing")


def test_it_rejects_an_empty_id_mapping() -> None:
    config = with_namespaces("mount", "user")
    put(config, "linux.uidMappings", [{"containerID": 0, "hostID": 1000, "size": 0}])
    rejects(config, "linux.uidMappings[0].size")


# -- process --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        ("process.args", [], "process.args"),
        ("process.args", "sh", "process.args"),
        ("process.args", ["sh", 1], "process.args[1]"),
        ("process.args", [""], "process.args[0]"),
        ("process.args", ["sh", "a\0b"], "process.args[1]"),
        ("process.cwd", "home", "process.cwd"),
        ("process.env", ["PATH"], "process.env[0]"),
        ("process.env", ["A=1", "=x"], "process.env[1]"),
        ("process.terminal", "yes", "process.terminal"),
        ("process.noNewPrivileges", 1, "process.noNewPrivileges"),
        ("process.user.uid", -1, "process.user.uid"),
        ("process.user.gid", True, "process.user.gid"),
        ("process.user.uid", 2**32 - 1, "process.user.uid"),
        ("process.user.uid", 1.5, "process.user.uid"),
        ("process.user.umask", 0o1000, "process.user.umask"),
        ("process.user.additionalGids", [5, -5], "process.user.additionalGids[1]"),
        ("process.consoleSize", {"height": 24}, "process.consoleSize.width"),
        ("process.oomScoreAdj", 1001, "process.oomScoreAdj"),
        ("process.oomScoreAdj", -1001, "process.oomScoreAdj"),
    ],
)
def test_it_rejects_a_bad_process_field(path: str, value: Any, field: str) -> None:
    rejects(put(minimal(), path, value), field)


def test_it_accepts_a_full_process() -> None:
    config = minimal()
    process = config["process"]
    process.update(
        terminal=True,
        consoleSize={"height": 24, "width": 80},
        env=["PATH=/bin", "EMPTY="],
        noNewPrivileges=True,
        oomScoreAdj=-1000,
    )
    process["user"].update(umask=0o022, additionalGids=[5, 10])
    assert spec.validate(config) == []


@pytest.mark.parametrize("missing", ["uid", "gid"])
def test_it_requires_uid_and_gid(missing: str) -> None:
    config = minimal()
    del config["process"]["user"][missing]
    rejects(config, f"process.user.{missing}", "required")


def test_it_requires_process_user() -> None:
    config = minimal()
    del config["process"]["user"]
    rejects(config, "process.user", "required")


def test_validate_process_checks_a_process_on_its_own() -> None:
    assert spec.validate_process({"user": {"uid": 0, "gid": 0}, "args": ["ls"], "cwd": "/"}) == []
    with pytest.raises(InvalidSpec) as info:
        spec.validate_process({"user": {"uid": 0, "gid": 0}, "args": [], "cwd": "/"})
    assert info.value.field == "process.args"


# -- rlimits --------------------------------------------------------------------------------


def test_it_accepts_rlimits_up_to_infinity() -> None:
    limits = [
        {"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 4096},
        {"type": "RLIMIT_CORE", "soft": 0, "hard": 2**64 - 1},
    ]
    assert spec.validate(put(minimal(), "process.rlimits", limits)) == []


def test_it_rejects_an_rlimit_whose_soft_limit_is_above_the_hard_one() -> None:
    limits = [{"type": "RLIMIT_NOFILE", "soft": 2048, "hard": 1024}]
    rejects(put(minimal(), "process.rlimits", limits), "process.rlimits[0].soft", "2048")


def test_it_rejects_an_unknown_rlimit() -> None:
    limits = [{"type": "RLIMIT_FILES", "soft": 1, "hard": 1}]
    rejects(put(minimal(), "process.rlimits", limits), "process.rlimits[0].type", "RLIMIT_FILES")


def test_it_rejects_a_duplicate_rlimit() -> None:
    limits = [{"type": "RLIMIT_NOFILE", "soft": 1, "hard": 1}] * 2
    rejects(put(minimal(), "process.rlimits", limits), "process.rlimits[1].type", "duplicate")


@pytest.mark.parametrize(("key", "value"), [("soft", -1), ("hard", "1024"), ("soft", None)])
def test_it_rejects_a_malformed_rlimit(key: str, value: Any) -> None:
    limit = {"type": "RLIMIT_NOFILE", "soft": 1, "hard": 1, key: value}
    rejects(put(minimal(), "process.rlimits", [limit]), f"process.rlimits[0].{key}")


# -- capabilities ---------------------------------------------------------------------------


def test_it_rejects_an_unknown_capability_naming_it() -> None:
    caps = {"bounding": ["CAP_KILL", "CAP_FLY"]}
    error = rejects(
        put(minimal(), "process.capabilities", caps), "process.capabilities.bounding[1]"
    )
    assert "CAP_FLY" in str(error)


def test_it_rejects_a_capability_without_the_cap_prefix() -> None:
    caps = {"permitted": ["KILL"]}
    rejects(put(minimal(), "process.capabilities", caps), "process.capabilities.permitted[0]")


def test_it_rejects_an_effective_capability_that_is_not_permitted() -> None:
    caps = {"effective": ["CAP_KILL"], "permitted": []}
    rejects(
        put(minimal(), "process.capabilities", caps),
        "process.capabilities.effective[0]",
        "permitted",
    )


def test_it_rejects_an_ambient_capability_that_is_not_inheritable() -> None:
    caps = {"permitted": ["CAP_KILL"], "ambient": ["CAP_KILL"]}
    rejects(
        put(minimal(), "process.capabilities", caps),
        "process.capabilities.ambient[0]",
        "inheritable",
    )


def test_it_accepts_all_five_capability_sets() -> None:
    everything = list(spec.CAPABILITIES)
    caps = {name: everything for name in ("bounding", "effective", "permitted", "inheritable")}
    caps["ambient"] = ["CAP_NET_BIND_SERVICE"]
    assert spec.validate(put(minimal(), "process.capabilities", caps)) == []


# -- warnings -------------------------------------------------------------------------------


def test_an_apparmor_profile_gives_a_warning_not_an_error() -> None:
    warnings = spec.validate(put(minimal(), "process.apparmorProfile", "docker-default"))
    assert len(warnings) == 1
    assert "apparmor" in warnings[0] and "docker-default" in warnings[0]


def test_selinux_labels_give_warnings() -> None:
    config = put(minimal(), "process.selinuxLabel", "system_u:system_r:container_t:s0")
    put(config, "linux.mountLabel", "system_u:object_r:container_file_t:s0")
    warnings = spec.validate(config)
    assert [w.split(":")[0] for w in warnings] == ["process.selinuxLabel", "linux.mountLabel"]


def test_an_empty_apparmor_profile_gives_no_warning() -> None:
    assert spec.validate(put(minimal(), "process.apparmorProfile", "")) == []


def test_a_non_string_apparmor_profile_is_an_error() -> None:
    rejects(put(minimal(), "process.apparmorProfile", ["x"]), "process.apparmorProfile")


# -- mounts ---------------------------------------------------------------------------------


def mount(**fields: Any) -> dict[str, Any]:
    return put(
        minimal(), "mounts", [{"destination": "/proc", "type": "proc", "source": "proc"}, fields]
    )


@pytest.mark.parametrize(
    "entry",
    [
        {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m"]},
        {"destination": "/data", "type": "bind", "source": "/srv/data"},
        {"destination": "/data", "type": "none", "source": "/srv", "options": ["rbind", "ro"]},
        {"destination": "/data", "source": "/srv", "options": ["bind"]},
        {"destination": "/data", "type": "ext4", "source": "/dev/sda1"},
        {"destination": "/dev/pts", "type": "devpts", "options": ["newinstance", "gid=5"]},
        {"destination": "/x", "type": "tmpfs", "options": ["rprivate", "nosymfollow", "X=1"]},
    ],
)
def test_it_accepts_well_formed_mounts(entry: dict[str, Any]) -> None:
    assert spec.validate(mount(**entry)) == []


@pytest.mark.parametrize(
    ("entry", "field", "word"),
    [
        ({"type": "tmpfs"}, "mounts[1].destination", "required"),
        ({"destination": "tmp", "type": "tmpfs"}, "mounts[1].destination", "absolute"),
        ({"destination": "/t", "type": "tmpfs", "options": "ro"}, "mounts[1].options", "list"),
        (
            {"destination": "/t", "type": "tmpfs", "options": ["ro", "fast"]},
            "mounts[1].options[1]",
            "'fast'",
        ),
        (
            {"destination": "/t", "type": "tmpfs", "options": ["newinstance"]},
            "mounts[1].options[0]",
            "unknown",
        ),
        (
            {"destination": "/t", "type": "tmpfs", "options": ["tmpcopyup"]},
            "mounts[1].options[0]",
            "not supported",
        ),
        (
            {"destination": "/t", "type": "bind", "source": "/s", "options": ["rro"]},
            "mounts[1].options[0]",
            "not supported",
        ),
        ({"destination": "/t", "type": "bind"}, "mounts[1].source", "source"),
        ({"destination": "/t", "type": "tmpfs", "options": ["bind"]}, "mounts[1].source", "source"),
        ({"destination": "/t", "source": "tmpfs"}, "mounts[1].type", "required"),
        ({"destination": "/t", "type": "none", "source": "/s"}, "mounts[1].type", "bind"),
        (
            {"destination": "/t", "type": "tmpfs", "uidMappings": []},
            "mounts[1].uidMappings",
            "not supported",
        ),
    ],
)
def test_it_rejects_a_bad_mount(entry: dict[str, Any], field: str, word: str) -> None:
    rejects(mount(**entry), field, word)


# -- hooks ----------------------------------------------------------------------------------


def test_it_accepts_every_hook_kind() -> None:
    hook = {"path": "/usr/bin/true", "args": ["true"], "env": ["A=1"], "timeout": 5}
    hooks = {
        kind: [hook]
        for kind in (
            "prestart",
            "createRuntime",
            "createContainer",
            "startContainer",
            "poststart",
            "poststop",
        )
    }
    assert spec.validate(put(minimal(), "hooks", hooks)) == []


@pytest.mark.parametrize(
    ("hook", "field"),
    [
        ({"path": "true"}, "hooks.poststart[0].path"),
        ({"args": ["true"]}, "hooks.poststart[0].path"),
        ({"path": "/bin/true", "timeout": 0}, "hooks.poststart[0].timeout"),
        ({"path": "/bin/true", "env": ["A"]}, "hooks.poststart[0].env[0]"),
    ],
)
def test_it_rejects_a_bad_hook(hook: dict[str, Any], field: str) -> None:
    rejects(put(minimal(), "hooks.poststart", [hook]), field)


# -- linux ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("device", "field"),
    [
        ({"path": "dev/null", "type": "c", "major": 1, "minor": 3}, "linux.devices[0].path"),
        ({"path": "/dev/x", "type": "x", "major": 1, "minor": 3}, "linux.devices[0].type"),
        ({"path": "/dev/x", "type": "c", "minor": 3}, "linux.devices[0].major"),
        ({"path": "/dev/x", "type": "b", "major": 8}, "linux.devices[0].minor"),
        (
            {"path": "/dev/x", "type": "c", "major": 1, "minor": 3, "fileMode": 0o10000},
            "linux.devices[0].fileMode",
        ),
    ],
)
def test_it_rejects_a_bad_device(device: dict[str, Any], field: str) -> None:
    rejects(put(minimal(), "linux.devices", [device]), field)


def test_it_accepts_devices_and_a_fifo_without_numbers() -> None:
    devices = [
        {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 0o666},
        {"path": "/dev/pipe", "type": "p"},
    ]
    assert spec.validate(put(minimal(), "linux.devices", devices)) == []


def test_it_rejects_a_cgroups_path_that_climbs_out() -> None:
    rejects(put(minimal(), "linux.cgroupsPath", "/playground/../../etc"), "linux.cgroupsPath")


def test_it_accepts_a_cgroups_path() -> None:
    assert spec.validate(put(minimal(), "linux.cgroupsPath", "/playground/box1")) == []


def test_it_rejects_an_unknown_rootfs_propagation() -> None:
    rejects(put(minimal(), "linux.rootfsPropagation", "recursive"), "linux.rootfsPropagation")


@pytest.mark.parametrize("field", ["maskedPaths", "readonlyPaths"])
def test_it_rejects_relative_masked_and_readonly_paths(field: str) -> None:
    rejects(put(minimal(), f"linux.{field}", ["/proc/kcore", "proc/keys"]), f"linux.{field}[1]")


# -- sysctl ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "kernel.msgmax",
        "kernel.shmmax",
        "kernel.shm_rmid_forced",
        "kernel.sem",
        "fs.mqueue.msg_max",
        "net.ipv4.ip_forward",
        "net/ipv4/ip_unprivileged_port_start",
        "net.ipv4.conf.eth0/100.rp_filter",
        "net/ipv4/conf/eth0.100/rp_filter",
        "kernel.domainname",
    ],
)
def test_it_accepts_namespaced_sysctls(name: str) -> None:
    assert spec.validate(put(minimal(), "linux.sysctl", {name: "1"})) == []


@pytest.mark.parametrize(
    ("name", "kinds", "word"),
    [
        ("kernel.msgmax", ("mount", "network"), "ipc namespace"),
        ("fs.mqueue.queues_max", ("mount",), "ipc namespace"),
        ("net.ipv4.ip_forward", ("mount", "ipc"), "network namespace"),
        ("vm.swappiness", NAMESPACES, "not in a separate kernel namespace"),
        ("kernel.pid_max", NAMESPACES, "not in a separate kernel namespace"),
        ("kernel.hostname", NAMESPACES, "hostname field"),
        ("kernel.domainname", ("mount",), "not in a separate kernel namespace"),
    ],
)
def test_it_rejects_sysctls_shared_with_the_host(
    name: str, kinds: tuple[str, ...], word: str
) -> None:
    config = put(with_namespaces(*kinds), "linux.sysctl", {name: "1"})
    error = rejects(config, f'linux.sysctl["{name}"]', word)
    assert name in error.reason


def test_it_rejects_net_sysctls_when_joining_the_hosts_network_namespace() -> None:
    config = put(with_namespaces("mount", network="/proc/self/ns/net"), "linux.sysctl", {})
    config["linux"]["sysctl"]["net.core.somaxconn"] = "1024"
    rejects(config, 'linux.sysctl["net.core.somaxconn"]', "host's network namespace")


def test_it_rejects_net_sysctls_when_the_network_namespace_path_is_missing(
    tmp_path: Path,
) -> None:
    config = with_namespaces("mount", network=str(tmp_path / "gone"))
    put(config, "linux.sysctl", {"net.core.somaxconn": "1024"})
    rejects(config, "linux.namespaces", "gone")


def test_it_names_slash_separated_sysctls_in_dotted_form() -> None:
    config = put(minimal(), "linux.sysctl", {"vm/overcommit_memory": "1"})
    error = rejects(config, 'linux.sysctl["vm/overcommit_memory"]')
    assert "vm.overcommit_memory" in error.reason


@pytest.mark.parametrize(
    ("name", "field"),
    [
        ("net/../../etc/x", 'linux.sysctl["net/../../etc/x"]'),
        ("net.ipv4..ip_forward", 'linux.sysctl["net.ipv4..ip_forward"]'),
        ("net.ipv4.", 'linux.sysctl["net.ipv4."]'),
        ("net.a b", 'linux.sysctl["net.a b"]'),
        ("", 'linux.sysctl[""]'),
        ("net", "linux.sysctl.net"),
    ],
)
def test_it_rejects_names_that_are_not_sysctls(name: str, field: str) -> None:
    rejects(put(minimal(), "linux.sysctl", {name: "1"}), field, "not a sysctl name")


def test_it_rejects_sysctl_values_that_are_not_strings() -> None:
    rejects(put(minimal(), "linux.sysctl", {"kernel.sem": 1}), 'linux.sysctl["kernel.sem"]')


# -- resources ------------------------------------------------------------------------------


def test_it_accepts_a_full_set_of_resources() -> None:
    resources = {
        "memory": {"limit": 2**30, "reservation": 2**29, "swap": 2**31, "swappiness": 60},
        "cpu": {
            "shares": 512,
            "quota": 50000,
            "burst": 10000,
            "period": 100000,
            "realtimeRuntime": 0,
            "cpus": "0-3,5",
            "mems": "0",
        },
        "pids": {"limit": 64},
        "devices": [
            {"allow": False, "access": "rwm"},
            {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rw"},
        ],
        "hugepageLimits": [{"pageSize": "2MB", "limit": 0}],
        "blockIO": {"weight": 500, "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1}]},
        "unified": {"memory.high": "max", "io.weight": "default 100"},
        "network": {"classID": 0x100001, "priorities": [{"name": "eth0", "priority": 5}]},
    }
    assert spec.validate(put(minimal(), "linux.resources", resources)) == []


def test_it_accepts_unlimited_memory() -> None:
    memory = {"limit": -1, "swap": -1}
    assert spec.validate(put(minimal(), "linux.resources.memory", memory)) == []


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        ("memory.limit", -2, "memory.limit"),
        ("memory.limit", "1G", "memory.limit"),
        ("memory.swappiness", 101, "memory.swappiness"),
        ("memory.disableOOMKiller", "true", "memory.disableOOMKiller"),
        ("memory", {"limit": 2048, "swap": 1024}, "memory.swap"),
        ("memory", {"swap": 1024}, "memory.swap"),
        ("memory", {"limit": -1, "swap": 1024}, "memory.swap"),
        ("cpu.realtimeRuntime", 950000, "cpu.realtimeRuntime"),
        ("cpu.realtimePeriod", 1000000, "cpu.realtimePeriod"),
        ("cpu.burst", -1, "cpu.burst"),
        ("network.classID", -1, "network.classID"),
        ("network.priorities", [{"name": "eth0"}], "network.priorities[0].priority"),
        ("cpu.cpus", "0-3,a", "cpu.cpus"),
        ("cpu.quota", -2, "cpu.quota"),
        ("cpu.idle", 2, "cpu.idle"),
        ("pids", {}, "pids.limit"),
        ("devices", [{"access": "rwm"}], "devices[0].allow"),
        ("devices", [{"allow": True, "access": "rwx"}], "devices[0].access"),
        ("devices", [{"allow": True, "access": "rr"}], "devices[0].access"),
        ("devices", [{"allow": True, "type": "u"}], "devices[0].type"),
        ("hugepageLimits", [{"pageSize": "2M", "limit": 1}], "hugepageLimits[0].pageSize"),
        ("blockIO.weight", 5, "blockIO.weight"),
        (
            "blockIO.throttleReadBpsDevice",
            [{"major": 8, "minor": 0}],
            "blockIO.throttleReadBpsDevice[0].rate",
        ),
        ("unified", {"../../release_agent": "x"}, 'unified["../../release_agent"]'),
        ("unified", {"memory.high": 5}, 'unified["memory.high"]'),
    ],
)
def test_it_rejects_bad_resources(path: str, value: Any, field: str) -> None:
    rejects(put(minimal(), f"linux.resources.{path}", value), f"linux.resources.{field}")


# -- seccomp --------------------------------------------------------------------------------

PROFILE = {
    "defaultAction": "SCMP_ACT_ERRNO",
    "defaultErrnoRet": 1,
    "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
    "flags": ["SECCOMP_FILTER_FLAG_LOG"],
    "syscalls": [
        {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
        {
            "names": ["personality"],
            "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}],
        },
        {"names": ["ptrace"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
    ],
}


def test_it_accepts_a_well_formed_seccomp_profile() -> None:
    assert spec.validate(put(minimal(), "linux.seccomp", copy.deepcopy(PROFILE))) == []


@pytest.mark.parametrize(
    ("path", "value", "field", "word"),
    [
        ("defaultAction", None, "defaultAction", "required"),
        ("defaultAction", "SCMP_ACT_PERMIT", "defaultAction", "SCMP_ACT_PERMIT"),
        ("defaultAction", "SCMP_ACT_NOTIFY", "defaultAction", "not supported"),
        ("architectures", ["x86_64"], "architectures[0]", "x86_64"),
        ("flags", ["SECCOMP_FILTER_FLAG_TSYNC"], "flags[0]", "TSYNC"),
        ("listenerPath", "/run/agent.sock", "listenerPath", "not supported"),
        ("syscalls[0].names", [], "syscalls[0].names", "empty"),
        ("syscalls[0].names", ["read", 7], "syscalls[0].names[1]", "system call"),
        ("syscalls[0].action", "SCMP_ACT_NOTIFY", "syscalls[0].action", "not supported"),
        ("syscalls[1].args[0].index", 6, "syscalls[1].args[0].index", "6"),
        ("syscalls[1].args[0].op", "SCMP_CMP_IN", "syscalls[1].args[0].op", "SCMP_CMP_IN"),
        ("syscalls[2].errnoRet", -1, "syscalls[2].errnoRet", "range"),
    ],
)
def test_it_rejects_a_malformed_seccomp_profile(
    path: str, value: Any, field: str, word: str
) -> None:
    config = put(minimal(), "linux.seccomp", copy.deepcopy(PROFILE))
    put(config, f"linux.seccomp.{path}", value)
    rejects(config, f"linux.seccomp.{field}", word)


# -- tables ---------------------------------------------------------------------------------


def test_capabilities_number_chown_through_checkpoint_restore() -> None:
    assert spec.CAPABILITIES["CAP_CHOWN"] == 0
    assert spec.CAPABILITIES["CAP_CHECKPOINT_RESTORE"] == 40
    assert sorted(spec.CAPABILITIES.values()) == list(range(41))
    assert all(name.startswith("CAP_") for name in spec.CAPABILITIES)


def test_capability_numbers_match_the_kernel_header() -> None:
    header = Path("/usr/include/linux/capability.h")
    if not header.exists():
        pytest.skip("linux-libc-dev is not installed")
    defined = dict(re.findall(r"#define (CAP_[A-Z_]+)\s+(\d+)\s*$", header.read_text(), re.M))
    for name, number in spec.CAPABILITIES.items():
        assert int(defined[name]) == number, name


def test_default_capabilities_are_dockers_without_the_risky_four() -> None:
    docker = {
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_FSETID",
        "CAP_FOWNER",
        "CAP_MKNOD",
        "CAP_NET_RAW",
        "CAP_SETGID",
        "CAP_SETUID",
        "CAP_SETFCAP",
        "CAP_SETPCAP",
        "CAP_NET_BIND_SERVICE",
        "CAP_SYS_CHROOT",
        "CAP_KILL",
        "CAP_AUDIT_WRITE",
    }
    risky = {"CAP_NET_RAW", "CAP_MKNOD", "CAP_AUDIT_WRITE", "CAP_SETFCAP"}
    assert set(spec.DEFAULT_CAPABILITIES) == docker - risky
    assert len(spec.DEFAULT_CAPABILITIES) == len(docker - risky)
    assert set(spec.DEFAULT_CAPABILITIES) <= set(spec.CAPABILITIES)


def test_rlimits_map_names_to_the_resource_module() -> None:
    assert spec.RLIMITS["RLIMIT_NOFILE"] == resource.RLIMIT_NOFILE
    assert spec.RLIMITS["RLIMIT_NPROC"] == resource.RLIMIT_NPROC
    assert spec.RLIMITS["RLIMIT_LOCKS"] == 10
    assert sorted(spec.RLIMITS.values()) == list(range(16))


def test_signals_table_includes_common_names_and_aliases() -> None:
    assert spec.SIGNALS["SIGTERM"] == signal.SIGTERM
    assert spec.SIGNALS["SIGKILL"] == 9
    assert spec.SIGNALS["SIGIOT"] == spec.SIGNALS["SIGABRT"]
    assert all(name.startswith("SIG") for name in spec.SIGNALS)


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("TERM", 15),
        ("SIGTERM", 15),
        ("sigterm", 15),
        ("term", 15),
        ("15", 15),
        ("sigkill", 9),
        ("KILL", 9),
        (" HUP ", 1),
        ("9", 9),
        ("WINCH", 28),
        ("RTMIN", signal.SIGRTMIN),
        ("SIGRTMIN+2", signal.SIGRTMIN + 2),
        ("rtmax-1", signal.SIGRTMAX - 1),
        ("64", 64),
    ],
)
def test_parse_signal_accepts_names_numbers_and_any_case(text: str, number: int) -> None:
    assert spec.parse_signal(text) == number


@pytest.mark.parametrize(
    "text", ["", "SIG", "FOO", "SIGFOO", "0", "65", "-9", "9.0", "RTMIN+99", "RTMAX-40", "\u0663"]
)
def test_parse_signal_rejects_unknown_signals(text: str) -> None:
    with pytest.raises(InvalidSpec) as info:
        spec.parse_signal(text)
    assert info.value.field == "signal"
