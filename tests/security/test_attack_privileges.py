"""Attacks on privileges and system calls, from a root shell in a default-profile container.

One container runs every probe (each system call in a forked child of the probe, so one that
got through would change nothing else); each test asserts one attack's safe outcome.
"""

from __future__ import annotations

import socket

import pytest

from tests.security.attack import EXPECTED_CAPS, Attacker, Outcome

pytestmark = pytest.mark.root

HOST_ONLY_PATH = __file__  # exists on the host, never in a busybox container

SCRIPT = f"""
/probe/probe syscalls
/probe/probe abi
/probe/probe chroot {HOST_ONLY_PATH}
grep -E '^(Cap[A-Za-z]+|NoNewPrivs|Seccomp):' /proc/self/status | sed 's/:[[:space:]]*/=/'
mount -t tmpfs none /mnt 2>/dev/null && echo sh_mount=OK || echo sh_mount=DENIED
mount --bind /proc /mnt 2>/dev/null && echo sh_bind=OK || echo sh_bind=DENIED
unshare -U -r true 2>/dev/null && echo sh_unshare=OK || echo sh_unshare=DENIED
unshare -m -n true 2>/dev/null && echo sh_unshare_mnt=OK || echo sh_unshare_mnt=DENIED
nsenter -t 1 -m -n true 2>/dev/null && echo sh_nsenter=OK || echo sh_nsenter=DENIED
mknod /tmp/vda b 254 0 2>/dev/null && echo sh_mknod=OK || echo sh_mknod=DENIED
dmesg >/dev/null 2>&1 && echo sh_dmesg=OK || echo sh_dmesg=DENIED
/probe/probe ping 127.0.0.1
cp /probe/probe /tmp/setuid-probe && chmod 4755 /tmp/setuid-probe
/probe/probe as 65534 /tmp/setuid-probe ids | sed 's/^/setuid_/'
hostname pg-attacker 2>/dev/null && echo sh_hostname=$(hostname) || echo sh_hostname=DENIED
echo done=1
"""


@pytest.fixture(scope="module")
def probed(attacker: Attacker) -> Outcome:
    outcome = attacker.run(SCRIPT)
    assert outcome.values.get("done") == "1", str(outcome)
    return outcome


@pytest.fixture(scope="module")
def got(probed: Outcome) -> dict[str, str]:
    return probed.values


def _denied(got: dict[str, str], *keys: str, allowed: tuple[str, ...] = ("EPERM",)) -> None:
    results = {key: got.get(key) for key in keys}
    assert all(value in allowed for value in results.values()), results


def test_mount_is_denied(got: dict[str, str]) -> None:
    _denied(got, "mount", "bind_mount")
    assert got["sh_mount"] == got["sh_bind"] == "DENIED"


def test_new_mount_api_is_denied(got: dict[str, str]) -> None:
    _denied(got, "fsopen", "open_tree", "move_mount", "fspick", "mount_setattr")


def test_pivot_root_and_remounting_sys_read_write_are_denied(got: dict[str, str]) -> None:
    _denied(got, "pivot_root", "remount_sys_rw")


def test_unshare_of_every_namespace_is_denied(got: dict[str, str]) -> None:
    kinds = ("user", "mnt", "net", "pid", "ipc", "uts", "cgroup", "time")
    _denied(got, *(f"unshare_{kind}" for kind in kinds))
    assert got["sh_unshare"] == got["sh_unshare_mnt"] == "DENIED"


def test_clone_with_namespace_flags_is_denied(got: dict[str, str]) -> None:
    _denied(got, "clone_newuser", "clone_newns")


def test_clone3_answers_enosys_so_libc_falls_back_to_checked_clone(got: dict[str, str]) -> None:
    assert got["clone3"] == "ENOSYS"


def test_setns_into_other_namespaces_is_denied(got: dict[str, str]) -> None:
    _denied(got, "setns")
    assert got["sh_nsenter"] == "DENIED"


def test_kernel_modules_cannot_be_loaded_or_removed(got: dict[str, str]) -> None:
    _denied(got, "init_module", "finit_module", "delete_module")


def test_kernel_keyring_is_unreachable(got: dict[str, str]) -> None:
    _denied(got, "keyctl", "add_key", "request_key")


def test_bpf_programs_and_maps_are_denied(got: dict[str, str]) -> None:
    _denied(got, "bpf_prog", "bpf_map")


def test_perf_events_userfaultfd_and_io_uring_are_denied(got: dict[str, str]) -> None:
    _denied(got, "perf_event_open", "userfaultfd", "io_uring_setup")


def test_the_i386_abi_kills_the_process(got: dict[str, str]) -> None:
    # int $0x80 with getpid and with i386's unshare number: the filter's architecture check
    # kills the whole process (SIGSYS, 31) before any number is looked at.
    assert got["int80_getpid"] == got["int80_unshare"] == "SIG31"


def test_the_x32_abi_kills_the_process(got: dict[str, str]) -> None:
    assert got["x32_getpid"] == got["x32_unshare"] == "SIG31"


def test_reboot_and_kexec_are_denied(got: dict[str, str]) -> None:
    _denied(got, "reboot", "kexec_load", "kexec_file_load")


def test_open_by_handle_at_shocker_is_denied(got: dict[str, str]) -> None:
    _denied(got, "open_by_handle_at", "name_to_handle_at")


def test_setuid_root_binaries_do_not_raise_privileges(got: dict[str, str]) -> None:
    # A setuid-root copy of the probe, run as nobody: no_new_privs and a nosuid root.
    assert got["setuid_euid"] == got["setuid_ruid"] == got["setuid_suid"] == "65534"


def test_raw_and_packet_sockets_are_denied(got: dict[str, str]) -> None:
    _denied(got, "raw_socket", "raw6_socket", "packet_socket")


def test_ping_works_through_icmp_datagram_sockets(got: dict[str, str]) -> None:
    # No CAP_NET_RAW, but net.ipv4.ping_group_range lets ping use an ICMP datagram socket.
    assert got["ping_socket"] == "OK"
    assert got["ping"] == "OK"


def test_vsock_alg_and_other_rare_socket_families_are_denied(got: dict[str, str]) -> None:
    _denied(got, "vsock_socket", "alg_socket", "alg_high_bits", "key_socket", "xdp_socket")
    _denied(got, "tipc_socketpair")


def test_ptrace_and_cross_process_memory_access_are_denied(got: dict[str, str]) -> None:
    _denied(got, "ptrace_traceme", "ptrace_attach", "process_vm_readv", "kcmp", "pidfd_getfd")


def test_personality_cannot_turn_off_aslr_or_nx(got: dict[str, str]) -> None:
    _denied(got, "personality_no_aslr", "personality_read_implies_exec")


def test_io_ports_and_ldt_are_denied(got: dict[str, str]) -> None:
    _denied(got, "iopl", "ioperm", "modify_ldt")


def test_the_clock_cannot_be_set(got: dict[str, str]) -> None:
    _denied(got, "settimeofday", "clock_settime", "adjtimex")


def test_swap_accounting_and_quota_controls_are_denied(got: dict[str, str]) -> None:
    _denied(got, "swapon", "acct", "quotactl", "vhangup", "fanotify_init", "set_mempolicy")


def test_the_kernel_log_is_unreadable(got: dict[str, str]) -> None:
    _denied(got, "syslog")
    assert got["sh_dmesg"] == "DENIED"


def test_realtime_scheduling_and_negative_nice_are_denied(got: dict[str, str]) -> None:
    _denied(got, "sched_fifo", "nice_down", allowed=("EPERM", "EACCES"))


def test_resource_limits_cannot_be_raised(got: dict[str, str]) -> None:
    _denied(got, "raise_nofile")


def test_capabilities_are_dockers_minus_four_in_every_set(got: dict[str, str]) -> None:
    for field in ("CapEff", "CapPrm", "CapBnd"):
        assert int(got[field], 16) == EXPECTED_CAPS, (field, got[field])
    assert int(got["CapInh"], 16) == int(got["CapAmb"], 16) == 0
    _denied(got, "capset_sys_admin")


def test_no_new_privs_and_the_seccomp_filter_are_on(got: dict[str, str]) -> None:
    assert got["NoNewPrivs"] == "1"
    assert got["Seccomp"] == "2"


def test_device_nodes_cannot_be_created(got: dict[str, str]) -> None:
    _denied(got, "mknod_block", "mknod_mem", "mknod_kmsg")
    assert got["sh_mknod"] == "DENIED"


def test_chroot_tricks_stay_inside_the_container(got: dict[str, str]) -> None:
    # CAP_SYS_CHROOT is Docker's default; the double-chroot escape climbs only to the
    # container's own root, because the host's root is not in its mount namespace at all.
    assert got["chroot"] == "OK"
    assert got["host_path_visible"] == "0"
    assert got["probe_visible"] == "1"


def test_the_hostname_cannot_be_changed(got: dict[str, str]) -> None:
    # sethostname needs CAP_SYS_ADMIN; had it got through, only the container's UTS
    # namespace would have changed.
    assert got["sh_hostname"] == "DENIED"
    assert socket.gethostname() != "pg-attacker"
