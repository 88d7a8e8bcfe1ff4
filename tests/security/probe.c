/* The attacker's static probe: raw system calls a shell cannot make, run inside a container.
 *
 * Built by the suite with `gcc -static -O2 -pthread` and bind-mounted read-only at /probe.
 * Every subcommand prints `key=value` lines. Each risky call runs in a forked child, so a
 * call that unexpectedly succeeds changes nothing in the probe, and every call is written to
 * be harmless if it does get through (no-op arguments, write-backs, CAD_OFF).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/inotify.h>
#include <sys/mount.h>
#include <grp.h>
#include <sys/personality.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define LINUX_REBOOT_MAGIC1 0xfee1dead
#define LINUX_REBOOT_MAGIC2 672274793
#define LINUX_REBOOT_CMD_CAD_OFF 0
#define X32_SYSCALL_BIT 0x40000000L

static void say(const char *key, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(const char *key, const char *fmt, ...) {
    char buf[512];
    int n = snprintf(buf, sizeof buf, "%s=", key);
    va_list ap;
    va_start(ap, fmt);
    n += vsnprintf(buf + n, sizeof buf - n, fmt, ap);
    va_end(ap);
    if (n > (int)sizeof buf - 2) n = sizeof buf - 2;
    buf[n++] = '\n';
    if (write(1, buf, n) < 0) _exit(3);
}

static const char *errname(int e) {
    switch (e) {
    case 0: return "OK";
    case EPERM: return "EPERM";
    case EACCES: return "EACCES";
    case ENOSYS: return "ENOSYS";
    case EINVAL: return "EINVAL";
    case EFAULT: return "EFAULT";
    case ENOENT: return "ENOENT";
    case EBADF: return "EBADF";
    case EROFS: return "EROFS";
    case ENOSPC: return "ENOSPC";
    case EMFILE: return "EMFILE";
    case ENFILE: return "ENFILE";
    case EAGAIN: return "EAGAIN";
    case ENOMEM: return "ENOMEM";
    case EBUSY: return "EBUSY";
    case EEXIST: return "EEXIST";
    case ENETUNREACH: return "ENETUNREACH";
    case EHOSTUNREACH: return "EHOSTUNREACH";
    case ECONNREFUSED: return "ECONNREFUSED";
    case ETIMEDOUT: return "ETIMEDOUT";
    case EAFNOSUPPORT: return "EAFNOSUPPORT";
    case EPROTONOSUPPORT: return "EPROTONOSUPPORT";
    case EOPNOTSUPP: return "EOPNOTSUPP";
    case ESRCH: return "ESRCH";
    case ETXTBSY: return "ETXTBSY";
    case EDQUOT: return "EDQUOT";
    case ENODEV: return "ENODEV";
    case ENXIO: return "ENXIO";
    default: {
        static char other[32];
        snprintf(other, sizeof other, "E%d", e);
        return other;
    }
    }
}

/* Run `fn` in a child; print `key=` with its result: an errno name, OK, or SIG<n>. */
typedef long (*call_fn)(void);
static void trial(const char *key, call_fn fn) {
    int fds[2];
    if (pipe(fds) < 0) { say(key, "PIPE"); return; }
    pid_t pid = fork();
    if (pid < 0) { say(key, "FORK-%s", errname(errno)); return; }
    if (pid == 0) {
        close(fds[0]);
        errno = 0;
        long r = fn();
        int e = r < 0 ? errno : 0;
        if (write(fds[1], &e, sizeof e) < 0) _exit(2);
        _exit(0);
    }
    close(fds[1]);
    int e = -1, status = 0;
    ssize_t got = read(fds[0], &e, sizeof e);
    close(fds[0]);
    waitpid(pid, &status, 0);
    if (WIFSIGNALED(status)) say(key, "SIG%d", WTERMSIG(status));
    else if (got != sizeof e) say(key, "NORESULT");
    else say(key, "%s", errname(e));
}

/* --- privileges and system calls ----------------------------------------------------------- */

static long do_mount(void) { return mount("none", "/mnt", "tmpfs", 0, "size=4k"); }
static long do_bind_mount(void) { return mount("/", "/mnt", NULL, MS_BIND, NULL); }
static long do_umount_mask(void) { return umount2("/proc/kcore", MNT_DETACH); }
static long do_umount_proc_sys(void) { return umount2("/proc/sys", MNT_DETACH); }
static long do_remount_sys_rw(void) {
    return mount(NULL, "/sys", NULL, MS_REMOUNT | MS_BIND, NULL);
}
static long do_pivot_root(void) { return syscall(SYS_pivot_root, ".", "."); }
static long do_fsopen(void) { return syscall(SYS_fsopen, "tmpfs", 0); }
static long do_open_tree(void) { return syscall(SYS_open_tree, AT_FDCWD, "/", 1 /* CLONE */); }
static long do_move_mount(void) {
    return syscall(SYS_move_mount, AT_FDCWD, "/proc", AT_FDCWD, "/mnt", 0);
}
static long do_fspick(void) { return syscall(SYS_fspick, AT_FDCWD, "/", 0); }
static long do_mount_setattr(void) {
    uint64_t attr[4] = {0, 0, 0, 0};
    return syscall(SYS_mount_setattr, AT_FDCWD, "/", 0, attr, sizeof attr);
}
static long do_unshare_user(void) { return unshare(CLONE_NEWUSER); }
static long do_unshare_mnt(void) { return unshare(CLONE_NEWNS); }
static long do_unshare_net(void) { return unshare(CLONE_NEWNET); }
static long do_unshare_pid(void) { return unshare(CLONE_NEWPID); }
static long do_unshare_ipc(void) { return unshare(CLONE_NEWIPC); }
static long do_unshare_uts(void) { return unshare(CLONE_NEWUTS); }
static long do_unshare_cgroup(void) { return unshare(CLONE_NEWCGROUP); }
static long do_unshare_time(void) { return unshare(0x80 /* CLONE_NEWTIME */); }
static long do_clone_newuser(void) {
    long r = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0);
    if (r == 0) _exit(0);
    return r;
}
static long do_clone_newns(void) {
    long r = syscall(SYS_clone, CLONE_NEWNS | CLONE_NEWNET | SIGCHLD, 0, 0, 0, 0);
    if (r == 0) _exit(0);
    return r;
}
static long do_clone3(void) { return syscall(SYS_clone3, NULL, 0); }
static long do_setns(void) {
    int fd = open("/proc/1/ns/mnt", O_RDONLY);
    if (fd < 0) return -1;
    return setns(fd, 0);
}
static long do_init_module(void) { return syscall(SYS_init_module, NULL, 0, ""); }
static long do_finit_module(void) {
    int fd = open("/dev/null", O_RDONLY);
    return syscall(SYS_finit_module, fd, "", 0);
}
static long do_delete_module(void) {
    return syscall(SYS_delete_module, "playground_no_such_module", O_NONBLOCK);
}
static long do_keyctl(void) { return syscall(SYS_keyctl, 0 /* GET_KEYRING_ID */, -3, 0, 0, 0); }
static long do_add_key(void) { return syscall(SYS_add_key, "user", "pg", "x", 1, -2); }
static long do_request_key(void) { return syscall(SYS_request_key, "user", "pg", NULL, 0); }
static long do_bpf_prog(void) {
    char attr[128];
    memset(attr, 0, sizeof attr);
    return syscall(SYS_bpf, 5 /* BPF_PROG_LOAD */, attr, sizeof attr);
}
static long do_bpf_map(void) {
    uint32_t attr[32];
    memset(attr, 0, sizeof attr);
    attr[0] = 2; /* BPF_MAP_TYPE_ARRAY */
    attr[1] = 4;
    attr[2] = 4;
    attr[3] = 1;
    return syscall(SYS_bpf, 0 /* BPF_MAP_CREATE */, attr, sizeof attr);
}
static long do_perf_event_open(void) {
    char attr[128];
    memset(attr, 0, sizeof attr);
    *(uint32_t *)(attr + 4) = sizeof attr;
    return syscall(SYS_perf_event_open, attr, 0, -1, -1, 0);
}
static long do_userfaultfd(void) { return syscall(SYS_userfaultfd, 0); }
static long do_io_uring(void) {
    char params[120];
    memset(params, 0, sizeof params);
    return syscall(SYS_io_uring_setup, 1, params);
}
static long do_kexec_load(void) { return syscall(SYS_kexec_load, 0, 0, NULL, 0); }
static long do_kexec_file_load(void) { return syscall(SYS_kexec_file_load, -1, -1, 0, "", 0); }
static long do_reboot(void) {
    return syscall(SYS_reboot, LINUX_REBOOT_MAGIC1, LINUX_REBOOT_MAGIC2, LINUX_REBOOT_CMD_CAD_OFF,
                   NULL);
}
static long do_open_by_handle_at(void) {
    /* "shocker": a handle of inode 2 (the root of most file systems). */
    struct {
        unsigned int handle_bytes;
        int handle_type;
        unsigned char f_handle[8];
    } h = {8, 1, {2, 0, 0, 0, 0, 0, 0, 0}};
    int fd = open("/etc/hostname", O_RDONLY);
    return syscall(SYS_open_by_handle_at, fd, &h, O_RDONLY);
}
static long do_name_to_handle_at(void) {
    char buf[256];
    int mount_id;
    *(unsigned int *)buf = 128;
    return syscall(SYS_name_to_handle_at, AT_FDCWD, "/", buf, &mount_id, 0);
}
static long do_raw_socket(void) { return socket(AF_INET, SOCK_RAW, IPPROTO_ICMP); }
static long do_raw6_socket(void) { return socket(AF_INET6, SOCK_RAW, IPPROTO_ICMPV6); }
static long do_packet_socket(void) { return socket(AF_PACKET, SOCK_RAW, htons(0x0003)); }
static long do_ping_socket(void) { return socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP); }
static long do_vsock_socket(void) { return socket(40 /* AF_VSOCK */, SOCK_STREAM, 0); }
static long do_alg_socket(void) { return socket(38 /* AF_ALG */, SOCK_SEQPACKET, 0); }
static long do_alg_high_bits(void) {
    return syscall(SYS_socket, (1L << 32) | 38, SOCK_SEQPACKET, 0);
}
static long do_key_socket(void) { return socket(15 /* AF_KEY */, SOCK_RAW, 2); }
static long do_xdp_socket(void) { return socket(44 /* AF_XDP */, SOCK_RAW, 0); }
static long do_tipc_socketpair(void) {
    int sv[2];
    return socketpair(30 /* AF_TIPC */, SOCK_SEQPACKET, 0, sv);
}
static long do_ptrace_traceme(void) { return syscall(SYS_ptrace, 0 /* TRACEME */, 0, 0, 0); }
static long do_ptrace_attach(void) {
    pid_t child = fork();
    if (child == 0) { pause(); _exit(0); }
    long r = syscall(SYS_ptrace, 16 /* ATTACH */, child, 0, 0);
    int e = errno;
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    errno = e;
    return r;
}
static long do_process_vm_readv(void) {
    return syscall(SYS_process_vm_readv, getppid(), NULL, 0, NULL, 0, 0);
}
static long do_personality_no_aslr(void) {
    return syscall(SYS_personality, ADDR_NO_RANDOMIZE);
}
static long do_personality_rie(void) { return syscall(SYS_personality, READ_IMPLIES_EXEC); }
static long do_iopl(void) { return syscall(SYS_iopl, 3); }
static long do_ioperm(void) { return syscall(SYS_ioperm, 0x80, 1, 1); }
static long do_swapon(void) { return syscall(SYS_swapon, "/dev/null", 0); }
static long do_syslog(void) {
    char buf[64];
    return syscall(SYS_syslog, 3 /* READ_ALL */, buf, sizeof buf);
}
static long do_acct(void) { return syscall(SYS_acct, NULL); }
static long do_settimeofday(void) {
    struct timeval tv;
    gettimeofday(&tv, NULL); /* the current time: harmless if it gets through */
    return syscall(SYS_settimeofday, &tv, NULL);
}
static long do_clock_settime(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return syscall(SYS_clock_settime, CLOCK_REALTIME, &ts);
}
static long do_adjtimex(void) {
    char tx[208];
    memset(tx, 0, sizeof tx); /* modes = 0: a read */
    return syscall(SYS_adjtimex, tx);
}
static long do_quotactl(void) { return syscall(SYS_quotactl, 0x800007 /* Q_SYNC */, NULL, 0, NULL); }
static long do_sched_fifo(void) {
    struct sched_param p = {.sched_priority = 1};
    return sched_setscheduler(0, SCHED_FIFO, &p);
}
static long do_nice_down(void) { return setpriority(PRIO_PROCESS, 0, -10); }
static long do_raise_nofile(void) {
    struct rlimit r = {1 << 20, 1 << 20};
    return setrlimit(RLIMIT_NOFILE, &r);
}
static long do_kcmp(void) { return syscall(SYS_kcmp, getpid(), getppid(), 0, 0, 0); }
static long do_pidfd_getfd(void) {
    long pidfd = syscall(SYS_pidfd_open, getppid(), 0);
    if (pidfd < 0) return -1;
    return syscall(SYS_pidfd_getfd, pidfd, 0, 0);
}
static long do_fanotify_init(void) { return syscall(SYS_fanotify_init, 0, 0); }
static long do_mknod_block(void) {
    return mknod("/tmp/pg-block", S_IFBLK | 0600, makedev(254, 0));
}
static long do_mknod_mem(void) { return mknod("/tmp/pg-mem", S_IFCHR | 0600, makedev(1, 1)); }
static long do_mknod_kmsg(void) { return mknod("/tmp/pg-kmsg", S_IFCHR | 0600, makedev(1, 11)); }
static long do_vhangup(void) { return syscall(SYS_vhangup); }
static long do_modify_ldt(void) {
    char buf[16];
    return syscall(SYS_modify_ldt, 0, buf, sizeof buf);
}
static long do_set_mempolicy(void) { return syscall(SYS_set_mempolicy, 0, NULL, 0); }
static long do_lookup_capset(void) {
    /* raise CAP_SYS_ADMIN (21) in the effective set */
    struct { uint32_t version; int pid; } hdr = {0x20080522, 0};
    struct { uint32_t eff, perm, inh; } data[2];
    memset(data, 0, sizeof data);
    if (syscall(SYS_capget, &hdr, data) < 0) return -1;
    data[0].eff |= 1u << 21;
    data[0].perm |= 1u << 21;
    return syscall(SYS_capset, &hdr, data);
}

static void cmd_syscalls(void) {
    static const struct { const char *key; call_fn fn; } calls[] = {
        {"mount", do_mount}, {"bind_mount", do_bind_mount}, {"umount_mask", do_umount_mask},
        {"umount_proc_sys", do_umount_proc_sys}, {"remount_sys_rw", do_remount_sys_rw},
        {"pivot_root", do_pivot_root}, {"fsopen", do_fsopen}, {"open_tree", do_open_tree},
        {"move_mount", do_move_mount}, {"fspick", do_fspick}, {"mount_setattr", do_mount_setattr},
        {"unshare_user", do_unshare_user}, {"unshare_mnt", do_unshare_mnt},
        {"unshare_net", do_unshare_net}, {"unshare_pid", do_unshare_pid},
        {"unshare_ipc", do_unshare_ipc}, {"unshare_uts", do_unshare_uts},
        {"unshare_cgroup", do_unshare_cgroup}, {"unshare_time", do_unshare_time},
        {"clone_newuser", do_clone_newuser}, {"clone_newns", do_clone_newns},
        {"clone3", do_clone3}, {"setns", do_setns}, {"init_module", do_init_module},
        {"finit_module", do_finit_module}, {"delete_module", do_delete_module},
        {"keyctl", do_keyctl}, {"add_key", do_add_key}, {"request_key", do_request_key},
        {"bpf_prog", do_bpf_prog}, {"bpf_map", do_bpf_map},
        {"perf_event_open", do_perf_event_open}, {"userfaultfd", do_userfaultfd},
        {"io_uring_setup", do_io_uring}, {"kexec_load", do_kexec_load},
        {"kexec_file_load", do_kexec_file_load}, {"reboot", do_reboot},
        {"open_by_handle_at", do_open_by_handle_at}, {"name_to_handle_at", do_name_to_handle_at},
        {"raw_socket", do_raw_socket}, {"raw6_socket", do_raw6_socket},
        {"packet_socket", do_packet_socket}, {"ping_socket", do_ping_socket},
        {"vsock_socket", do_vsock_socket}, {"alg_socket", do_alg_socket},
        {"alg_high_bits", do_alg_high_bits}, {"key_socket", do_key_socket},
        {"xdp_socket", do_xdp_socket}, {"tipc_socketpair", do_tipc_socketpair},
        {"ptrace_traceme", do_ptrace_traceme}, {"ptrace_attach", do_ptrace_attach},
        {"process_vm_readv", do_process_vm_readv},
        {"personality_no_aslr", do_personality_no_aslr},
        {"personality_read_implies_exec", do_personality_rie}, {"iopl", do_iopl},
        {"ioperm", do_ioperm}, {"swapon", do_swapon}, {"syslog", do_syslog}, {"acct", do_acct},
        {"settimeofday", do_settimeofday}, {"clock_settime", do_clock_settime},
        {"adjtimex", do_adjtimex}, {"quotactl", do_quotactl}, {"sched_fifo", do_sched_fifo},
        {"nice_down", do_nice_down}, {"raise_nofile", do_raise_nofile}, {"kcmp", do_kcmp},
        {"pidfd_getfd", do_pidfd_getfd}, {"fanotify_init", do_fanotify_init},
        {"mknod_block", do_mknod_block}, {"mknod_mem", do_mknod_mem},
        {"mknod_kmsg", do_mknod_kmsg}, {"vhangup", do_vhangup}, {"modify_ldt", do_modify_ldt},
        {"set_mempolicy", do_set_mempolicy}, {"capset_sys_admin", do_lookup_capset},
    };
    for (size_t i = 0; i < sizeof calls / sizeof calls[0]; i++) trial(calls[i].key, calls[i].fn);
}

/* --- other ABIs ------------------------------------------------------------------------------ */

static long do_int80(void) {
    long ret;
    /* getpid through the i386 entry point */
    __asm__ volatile("int $0x80" : "=a"(ret) : "a"(20L) : "memory");
    return ret < 0 ? (errno = -ret, -1) : 0;
}
static long do_int80_unshare(void) {
    long ret;
    /* unshare(CLONE_NEWUSER) through the i386 table (310): a filter keyed on x86_64 numbers
     * alone would see an allowed call */
    __asm__ volatile("int $0x80" : "=a"(ret) : "a"(310L), "b"(CLONE_NEWUSER) : "memory");
    return ret < 0 ? (errno = -ret, -1) : 0;
}
static long do_x32(void) { return syscall(X32_SYSCALL_BIT | SYS_getpid); }
static long do_x32_unshare(void) { return syscall(X32_SYSCALL_BIT | SYS_unshare, CLONE_NEWUSER); }

static void cmd_abi(void) {
    trial("int80_getpid", do_int80);
    trial("int80_unshare", do_int80_unshare);
    trial("x32_getpid", do_x32);
    trial("x32_unshare", do_x32_unshare);
}

/* --- identity, breakouts --------------------------------------------------------------------- */

static void cmd_ids(void) {
    uid_t r, e, s;
    getresuid(&r, &e, &s);
    say("ruid", "%d", r);
    say("euid", "%d", e);
    say("suid", "%d", s);
}

/* Become `uid` (like `setpriv --reuid`, which busybox lacks) and exec argv. */
static int cmd_as(int uid, char **argv) {
    if (setgroups(0, NULL) < 0 || setresgid(uid, uid, uid) < 0 || setresuid(uid, uid, uid) < 0) {
        say("as", "%s", errname(errno));
        return 1;
    }
    execv(argv[0], argv);
    say("as", "EXEC-%s", errname(errno));
    return 1;
}

static void cmd_chroot(const char *host_path) {
    /* The classic double chroot: a cwd left outside the new root, then ".." to the top. */
    mkdir("/tmp/pg-jail", 0700);
    if (chroot("/tmp/pg-jail") < 0) { say("chroot", "%s", errname(errno)); return; }
    for (int i = 0; i < 256; i++)
        if (chdir("..") < 0) break;
    if (chroot(".") < 0) { say("chroot", "%s", errname(errno)); return; }
    say("chroot", "OK");
    say("host_path_visible", "%d", access(host_path, F_OK) == 0);
    say("probe_visible", "%d", access("/probe/probe", F_OK) == 0);
}

/* --- resources ------------------------------------------------------------------------------- */

static void *sleeper(void *arg) {
    (void)arg;
    pause();
    return NULL;
}

static void cmd_threads(long limit) {
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 64 * 1024);
    long n = 0;
    int err = 0;
    for (; n < limit; n++) {
        pthread_t t;
        err = pthread_create(&t, &attr, sleeper, NULL);
        if (err) break;
    }
    say("threads", "%ld", n);
    say("error", "%s", errname(err));
    _exit(0); /* ends every thread */
}

static void cmd_fds(void) {
    long n = 0;
    int e = 0;
    for (;;) {
        if (open("/dev/null", O_RDONLY) < 0) { e = errno; break; }
        n++;
    }
    say("fds", "%ld", n);
    say("error", "%s", errname(e));
    struct rlimit r = {1 << 20, 1 << 20};
    say("raise", "%s", setrlimit(RLIMIT_NOFILE, &r) < 0 ? errname(errno) : "OK");
}

/* inotify instances are limited per user (fs.inotify.max_user_instances), charged up the
 * user namespace tree to each namespace's owner: open as many as allowed, report, hold them
 * for `hold` seconds (the test removes the container sooner). */
static void cmd_inotify(long limit, int hold) {
    long n = 0;
    int e = 0;
    for (; n < limit; n++) {
        if (inotify_init1(IN_CLOEXEC) < 0) { e = errno; break; }
    }
    say("instances", "%ld", n);
    say("error", "%s", errname(e));
    sleep(hold);
}

static void cmd_files(const char *dir, long limit) {
    char path[PATH_MAX];
    long n = 0;
    int e = 0;
    for (; n < limit; n++) {
        snprintf(path, sizeof path, "%s/f%ld", dir, n);
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
        if (fd < 0) { e = errno; break; }
        close(fd);
    }
    say("files", "%ld", n);
    say("error", "%s", errname(e));
}

static void cmd_ptys(long limit) {
    long n = 0;
    int e = 0;
    for (; n < limit; n++) {
        int fd = posix_openpt(O_RDWR | O_NOCTTY);
        if (fd < 0) { e = errno; break; }
    }
    say("ptys", "%ld", n);
    say("error", "%s", errname(e));
}

static void cmd_memory(long max_mib) {
    long mib = 0;
    for (; mib < max_mib; mib += 16) {
        char *p = malloc(16 << 20);
        if (!p) break;
        memset(p, 0x5a, 16 << 20);
        if (mib % 256 == 0) say("allocated_mib", "%ld", mib);
    }
    say("allocated_mib", "%ld", mib);
    say("survived", "1");
}

/* --- /proc/<pid>/exe of what the runtime runs ----------------------------------------------- */

static void cmd_exewatch(int seconds) {
    time_t end = time(NULL) + seconds;
    pid_t self = getpid();
    long seen = 0, opened = 0, writable = 0;
    dev_t reported_dev[64];
    ino_t reported_ino[64];
    int reported = 0;
    while (time(NULL) < end) {
        DIR *d = opendir("/proc");
        if (!d) break;
        struct dirent *ent;
        while ((ent = readdir(d))) {
            pid_t pid = atoi(ent->d_name);
            if (pid <= 0 || pid == self) continue;
            char path[64], link[256];
            snprintf(path, sizeof path, "/proc/%d/exe", pid);
            seen++;
            int fd = open(path, O_RDONLY | O_CLOEXEC);
            if (fd < 0) continue;
            opened++;
            struct stat st;
            if (fstat(fd, &st) == 0) {
                int known = 0;
                for (int i = 0; i < reported; i++)
                    if (reported_dev[i] == st.st_dev && reported_ino[i] == st.st_ino) known = 1;
                if (!known && reported < 64) {
                    ssize_t n = readlink(path, link, sizeof link - 1);
                    link[n > 0 ? n : 0] = 0;
                    say("exe", "%lu:%lu:%s", (unsigned long)st.st_dev,
                        (unsigned long)st.st_ino, link);
                    reported_dev[reported] = st.st_dev;
                    reported_ino[reported++] = st.st_ino;
                }
            }
            close(fd);
            /* Opening for writing is the attack (CVE-2019-5736); nothing is ever written. */
            int wfd = open(path, O_WRONLY | O_CLOEXEC);
            if (wfd >= 0) {
                writable++;
                close(wfd);
            }
        }
        closedir(d);
    }
    say("seen", "%ld", seen);
    say("opened", "%ld", opened);
    say("writable", "%ld", writable);
}

/* --- network --------------------------------------------------------------------------------- */

static void cmd_connect(const char *host, int port) {
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    socklen_t len;
    int family;
    if (strchr(host, ':')) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = family = AF_INET6;
        a->sin6_port = htons(port);
        if (inet_pton(AF_INET6, host, &a->sin6_addr) != 1) { say("connect", "BADADDR"); return; }
        len = sizeof *a;
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = family = AF_INET;
        a->sin_port = htons(port);
        if (inet_pton(AF_INET, host, &a->sin_addr) != 1) { say("connect", "BADADDR"); return; }
        len = sizeof *a;
    }
    int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (fd < 0) { say("connect", "SOCKET-%s", errname(errno)); return; }
    if (connect(fd, (struct sockaddr *)&ss, len) == 0) { say("connect", "OK"); return; }
    if (errno != EINPROGRESS) { say("connect", "%s", errname(errno)); return; }
    struct pollfd p = {fd, POLLOUT, 0};
    if (poll(&p, 1, 3000) == 0) { say("connect", "ETIMEDOUT"); return; }
    int err = 0;
    socklen_t el = sizeof err;
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el);
    say("connect", "%s", errname(err));
}

/* An ICMP echo through a datagram socket (what iputils' ping does without CAP_NET_RAW). */
static void cmd_ping(const char *host) {
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    if (inet_pton(AF_INET, host, &a.sin_addr) != 1) { say("ping", "BADADDR"); return; }
    int fd = socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP);
    if (fd < 0) { say("ping", "SOCKET-%s", errname(errno)); return; }
    unsigned char echo[16] = {8 /* ECHO */, 0, 0, 0, 0, 0, 0, 1, 'p', 'g'};
    if (sendto(fd, echo, sizeof echo, 0, (struct sockaddr *)&a, sizeof a) < 0) {
        say("ping", "%s", errname(errno));
        return;
    }
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, 2000) <= 0) { say("ping", "TIMEOUT"); return; }
    unsigned char reply[64];
    ssize_t n = recv(fd, reply, sizeof reply, 0);
    say("ping", "%s", n > 0 && reply[0] == 0 /* ECHOREPLY */ ? "OK" : "BADREPLY");
}

static void cmd_abstract(const char *name) {
    struct sockaddr_un a;
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    size_t n = strlen(name);
    if (n > sizeof a.sun_path - 1) n = sizeof a.sun_path - 1;
    memcpy(a.sun_path + 1, name, n);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    int r = connect(fd, (struct sockaddr *)&a, offsetof(struct sockaddr_un, sun_path) + 1 + n);
    say("abstract", "%s", r == 0 ? "OK" : errname(errno));
}

static void cmd_listen_tcp(const char *host, int port, int seconds) {
    struct sockaddr_in6 a;
    memset(&a, 0, sizeof a);
    a.sin6_family = AF_INET6;
    a.sin6_port = htons(port);
    a.sin6_addr = in6addr_any; /* dual-stack: IPv4 and IPv6 */
    (void)host;
    int fd = socket(AF_INET6, SOCK_STREAM, 0);
    int off = 0, on = 1;
    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off);
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(fd, 8) < 0) {
        say("listen", "%s", errname(errno));
        return;
    }
    say("listen", "OK");
    struct pollfd p = {fd, POLLIN, 0};
    say("accepted", "%d", poll(&p, 1, seconds * 1000) > 0);
}

static void cmd_listen_abstract(const char *name, int seconds) {
    struct sockaddr_un a;
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    size_t n = strlen(name);
    memcpy(a.sun_path + 1, name, n);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (bind(fd, (struct sockaddr *)&a, offsetof(struct sockaddr_un, sun_path) + 1 + n) < 0 ||
        listen(fd, 8) < 0) {
        say("listen", "%s", errname(errno));
        return;
    }
    say("listen", "OK");
    struct pollfd p = {fd, POLLIN, 0};
    say("accepted", "%d", poll(&p, 1, seconds * 1000) > 0);
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IONBF, 0);
    if (argc < 2) { fprintf(stderr, "usage: probe COMMAND [ARGS]\n"); return 2; }
    const char *cmd = argv[1];
    const char *a1 = argc > 2 ? argv[2] : "", *a2 = argc > 3 ? argv[3] : "0";
    if (!strcmp(cmd, "syscalls")) cmd_syscalls();
    else if (!strcmp(cmd, "abi")) cmd_abi();
    else if (!strcmp(cmd, "ids")) cmd_ids();
    else if (!strcmp(cmd, "chroot")) cmd_chroot(a1);
    else if (!strcmp(cmd, "as") && argc > 3) return cmd_as(atoi(a1), argv + 3);
    else if (!strcmp(cmd, "threads")) cmd_threads(atol(a1));
    else if (!strcmp(cmd, "fds")) cmd_fds();
    else if (!strcmp(cmd, "inotify")) cmd_inotify(atol(a1), atoi(a2));
    else if (!strcmp(cmd, "files")) cmd_files(a1, atol(a2));
    else if (!strcmp(cmd, "ptys")) cmd_ptys(atol(a1));
    else if (!strcmp(cmd, "memory")) cmd_memory(atol(a1));
    else if (!strcmp(cmd, "exewatch")) cmd_exewatch(atoi(a1));
    else if (!strcmp(cmd, "connect")) cmd_connect(a1, atoi(a2));
    else if (!strcmp(cmd, "abstract")) cmd_abstract(a1);
    else if (!strcmp(cmd, "ping")) cmd_ping(a1);
    else if (!strcmp(cmd, "listen-abstract")) cmd_listen_abstract(a1, atoi(a2));
    else if (!strcmp(cmd, "listen-tcp") && argc > 4) cmd_listen_tcp(a1, atoi(a2), atoi(argv[4]));
    else { fprintf(stderr, "unknown command %s\n", cmd); return 2; }
    return 0;
}
