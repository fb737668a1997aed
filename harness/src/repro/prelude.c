#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/kvm.h>
#include <linux/falloc.h>

/* Helpers for op kinds this program does not use stay defined. */
#pragma GCC diagnostic ignored "-Wunused-function"

/*
 * Definitions newer than some uapi headers (include/uapi/linux/kvm.h, 6.8+), under our own
 * names so they never clash with a header that has them.
 */
struct gf_userspace_memory_region2 {
    uint32_t slot;
    uint32_t flags;
    uint64_t guest_phys_addr;
    uint64_t memory_size;
    uint64_t userspace_addr;
    uint64_t guest_memfd_offset;
    uint32_t guest_memfd;
    uint32_t pad1;
    uint64_t pad2[14];
};
struct gf_create_guest_memfd {
    uint64_t size;
    uint64_t flags;
    uint64_t reserved[6];
};
struct gf_memory_attributes {
    uint64_t address;
    uint64_t size;
    uint64_t attributes;
    uint64_t flags;
};
/* The memory_fault member of kvm_run's exit union. */
struct gf_pre_fault_memory {
    uint64_t gpa;
    uint64_t size;
    uint64_t flags;
    uint64_t padding[5];
};

struct gf_memory_fault {
    uint64_t flags;
    uint64_t gpa;
    uint64_t size;
};
#define GF_KVM_SET_USER_MEMORY_REGION2 _IOW(KVMIO, 0x49, struct gf_userspace_memory_region2)
#define GF_KVM_SET_MEMORY_ATTRIBUTES _IOW(KVMIO, 0xd2, struct gf_memory_attributes)
#define GF_KVM_CREATE_GUEST_MEMFD _IOWR(KVMIO, 0xd4, struct gf_create_guest_memfd)
#define GF_KVM_PRE_FAULT_MEMORY _IOWR(KVMIO, 0xd5, struct gf_pre_fault_memory)

@ABI_DEFINES@
#define MAX_GMEMS 256
#define MAX_SLOTS 64

enum fd_kind { FD_GMEM, FD_INVALID, FD_NOT_GMEM };

struct access {
    uint64_t gpa;
    int width;
    int write;
    uint64_t value;
};

static int kvm_fd = -1, vm_fd = -1, vcpu_fd = -1;
static int vm_tid; /* the thread that made the VM: its debugfs directory is "tid-fd" */
static struct kvm_run *run;
static size_t run_size;
static uint8_t *code_mem, *mailbox;

static struct {
    int made; /* 0 where the create failed: the id names no file */
    int fd;   /* -1 once closed */
    uint8_t *map;
    uint64_t size;
} gmems[MAX_GMEMS];
static int ngmems;

static struct {
    int used;
    uint32_t id;
    uint64_t uaddr, size;
    void *anon; /* anonymous memory behind uaddr, when it is not the file's mapping */
    size_t anon_len;
    uint32_t guest_memfd;
} slots[MAX_SLOTS];

/* Per thread: a concurrent group's members each observe on their own thread. */
static __thread char obs[16384]; /* a reverse map of 2 MiB lists 512 GFNs */
static int failures;
/* Cleared by the first concurrent group whose orders end in different states: what follows
 * depends on the order its members took, which the model's expectations (one order) do not
 * know; shown, not compared. */
static int comparing = 1;

/* The vCPU this thread runs: vCPU 0 (the globals above) unless a group member took another. */
#define MAX_VCPUS 4
static int extra_fd[MAX_VCPUS];
static struct kvm_run *extra_run[MAX_VCPUS];
static __thread int my_vcpu; /* 0: vcpu_fd/run/mailbox */

static void die(const char *what)
{
    fprintf(stderr, "SETUP FAILED: %s: %s\n", what, strerror(errno));
    exit(2);
}

static void set_obs(const char *s) { snprintf(obs, sizeof(obs), "%s", s); }

/* Errno names as gmemfuzz prints them (gmemfuzz_backends::abi::errno, from nix). */
static const char *errno_name(int e)
{
    switch (e) {
@ERRNO_CASES@
    default: return NULL;
    }
}

/* An outcome in the words gmemfuzz prints (Outcome's Display). */
static void set_result(int rc)
{
    if (rc == 0) {
        set_obs(WORD_OK);
    } else if (errno_name(errno)) {
        snprintf(obs, sizeof(obs), WORD_ERROR_NAMED, errno_name(errno));
    } else {
        snprintf(obs, sizeof(obs), WORD_ERROR_NUMBER, errno);
    }
}

static void report(int index, const char *line, const char *expected)
{
    if (!comparing)
        expected = NULL;
    int same = !expected || strcmp(obs, expected) == 0;
    printf("#%-3d %s\n      model: %s\n      kvm:   %s%s\n", index, line,
           expected ? expected : comparing ? "(not predicted)" : "(not compared after a group)", obs,
           same ? "" : "    <== DIFFERS");
    if (!same)
        failures++;
}

static void skipped(int index, const char *line, const char *reason)
{
    printf("#%-3d %s\n      skipped by every backend (%s): not sent\n", index, line, reason);
}

static int set_region(uint32_t slot, uint32_t flags, uint64_t gpa, uint64_t size, uint64_t uaddr, uint32_t gfd, uint64_t offset)
{
    struct gf_userspace_memory_region2 r;
    memset(&r, 0, sizeof(r));
    r.slot = slot;                  /* memslot id (address space 0) */
    r.flags = flags;                /* KVM_MEM_* flags */
    r.guest_phys_addr = gpa;        /* first guest-physical address */
    r.memory_size = size;           /* bytes; 0 deletes the slot */
    r.userspace_addr = uaddr;       /* the shared side */
    r.guest_memfd_offset = offset;  /* byte offset into the guest_memfd */
    r.guest_memfd = gfd;            /* the guest_memfd fd (KVM_MEM_GUEST_MEMFD) */
    return ioctl(vm_fd, GF_KVM_SET_USER_MEMORY_REGION2, &r);
}

static void *anon_map(size_t len)
{
    return mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
}

/* Slot memory is congruent to its GPA (a file mapping to its file offset) modulo 1 GiB, or
 * kvm_alloc_memslot_metadata() disallows large pages for the whole slot. */
#define SLOT_ALIGN (1ull << 30)

/* len bytes of anonymous memory at an address congruent to `to` modulo SLOT_ALIGN. */
static void *aligned_anon_map(size_t len, uint64_t to)
{
    uint8_t *whole = len > SIZE_MAX - SLOT_ALIGN ? MAP_FAILED : anon_map(len + SLOT_ALIGN);
    if (whole == MAP_FAILED)
        return MAP_FAILED;
    size_t skip = (to - (uint64_t)(uintptr_t)whole) % SLOT_ALIGN;
    if (skip)
        munmap(whole, skip);
    munmap(whole + skip + len, SLOT_ALIGN - skip);
    return whole + skip;
}

/* Slot memory KVM may map with 2 MiB pages: aligned, and backed by THP where the kernel has it. */
static void *slot_anon_map(size_t len, uint64_t gpa)
{
    void *p = aligned_anon_map(len, gpa);
    if (p != MAP_FAILED)
        madvise(p, len, MADV_HUGEPAGE); /* EINVAL without THP: plain pages then */
    return p;
}

static int make_vcpu(int id, struct kvm_run **run_out);

static void create_vm(unsigned long type)
{
    vm_fd = ioctl(kvm_fd, KVM_CREATE_VM, type /* VM type */);
    if (vm_fd < 0)
        die("KVM_CREATE_VM");
    vm_tid = (int)syscall(SYS_gettid);
    /* The harness slots: guest code and the mailbox (plain anonymous memory). */
    if (set_region(CODE_SLOT, 0, CODE_GPA, CODE_SIZE, (uint64_t)(uintptr_t)code_mem, 0, 0))
        die("code memslot");
    if (set_region(MAILBOX_SLOT, 0, MAILBOX_GPA, MAILBOX_SIZE, (uint64_t)(uintptr_t)mailbox, 0, 0))
        die("mailbox memslot");
    vcpu_fd = make_vcpu(0, &run);
}

/* vCPU `id` in 32-bit flat protected mode, set up purely through the hidden segment state. */
static int make_vcpu(int id, struct kvm_run **run_out)
{
    int fd = ioctl(vm_fd, KVM_CREATE_VCPU, id /* vCPU id */);
    if (fd < 0)
        die("KVM_CREATE_VCPU");
    *run_out = mmap(NULL, run_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (*run_out == MAP_FAILED)
        die("mmap kvm_run");
    struct kvm_sregs sregs;
    if (ioctl(fd, KVM_GET_SREGS, &sregs))
        die("KVM_GET_SREGS");
    struct kvm_segment seg;
    memset(&seg, 0, sizeof(seg));
    seg.base = 0;
    seg.limit = 0xffffffff;
    seg.present = 1;
    seg.dpl = 0;
    seg.db = 1;
    seg.s = 1;
    seg.l = 0;
    seg.g = 1;
    seg.selector = CPU_CODE_SELECTOR;
    seg.type = CPU_CODE_TYPE;
    sregs.cs = seg;
    seg.selector = CPU_DATA_SELECTOR;
    seg.type = CPU_DATA_TYPE;
    sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = seg;
    sregs.cr0 |= 1; /* PE */
    if (ioctl(fd, KVM_SET_SREGS, &sregs))
        die("KVM_SET_SREGS");
    return fd;
}

@GUEST_CODE@

static void setup(unsigned long vm_type)
{
    kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (kvm_fd < 0)
        die("open /dev/kvm");
    int size = ioctl(kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (size <= 0)
        die("KVM_GET_VCPU_MMAP_SIZE");
    run_size = size;
    code_mem = anon_map(CODE_SIZE);
    mailbox = anon_map(MAILBOX_SIZE);
    if (code_mem == MAP_FAILED || mailbox == MAP_FAILED)
        die("harness memory");
    memcpy(code_mem, guest_code, sizeof(guest_code));
    create_vm(vm_type);
    setvbuf(stdout, NULL, _IOLBF, 0);
}

/* This thread's vCPU's window of the mailbox (vCPU k > 0: MB_VCPU_STRIDE bytes at k times it). */
static uint8_t *my_mailbox(void) { return mailbox + my_vcpu * MB_VCPU_STRIDE; }

static void mailbox_put(uint64_t off, uint64_t v, size_t bytes) { memcpy(my_mailbox() + off, &v, bytes); }

static uint64_t mailbox_get(uint64_t off, size_t bytes)
{
    uint64_t v = 0;
    memcpy(&v, my_mailbox() + off, bytes);
    return v;
}

static void append(const char *s)
{
    size_t n = strlen(obs);
    snprintf(obs + n, sizeof(obs) - n, "%s", s);
}

static int vcpu_fd_0(void) { return vcpu_fd; }
static struct kvm_run *run_0(void) { return run; }

/* Command i of the next run: code, gpa, value (in for stores and digests). */
static void post_command(int i, uint32_t code, uint64_t gpa, uint64_t value)
{
    mailbox_put(CMD_HEADER + i * CMD_SIZE + CMD_CODE, code, 4);
    mailbox_put(CMD_HEADER + i * CMD_SIZE + CMD_GPA, gpa, 4);
    mailbox_put(CMD_HEADER + i * CMD_SIZE + CMD_VALUE, value, 8);
}

static uint64_t command_value(int i) { return mailbox_get(CMD_HEADER + i * CMD_SIZE + CMD_VALUE, 8); }

/* How each command of the last run ended, when not by completing. */
static __thread enum { EXIT_NONE, EXIT_MMIO, EXIT_FAULT, EXIT_NOT_RUN } exits[MAX_COMMANDS];
static __thread struct gf_memory_fault faults[MAX_COMMANDS];

/*
 * Runs the n posted commands until HLT (KvmBackend::run_commands). An MMIO exit is answered
 * (reads get 0; a digest is told to stop) and the run goes on; a memory-fault exit ends the
 * command, and the run either stops there (stop_on_fault) or resumes at the next command.
 */
static void run_commands(int n, int stop_on_fault)
{
    int vcpu_fd = my_vcpu ? extra_fd[my_vcpu] : vcpu_fd_0();
    struct kvm_run *run = my_vcpu ? extra_run[my_vcpu] : run_0();
    for (int i = 0; i < n; i++)
        exits[i] = EXIT_NONE;
    mailbox_put(MB_COUNT, n, 4);
    uint64_t start = 0;
    for (;;) {
        mailbox_put(MB_START, start, 4);
        struct kvm_regs regs;
        memset(&regs, 0, sizeof(regs));
        regs.rip = CODE_GPA;
        regs.rflags = CPU_RFLAGS;
        regs.rsp = STACK_TOP;
        regs.rbp = MAILBOX_GPA + my_vcpu * MB_VCPU_STRIDE; /* the interpreter finds its mailbox through EBP */
        if (ioctl(vcpu_fd, KVM_SET_REGS, &regs))
            die("KVM_SET_REGS");
        for (;;) {
            int rc = ioctl(vcpu_fd, KVM_RUN, 0);
            uint32_t cur = mailbox_get(MB_CURRENT, 4); /* the command being executed */
            if (rc < 0 && errno == EFAULT && run->exit_reason == GF_KVM_EXIT_MEMORY_FAULT) {
                memcpy(&faults[cur], &run->hw, sizeof(faults[cur]));
                exits[cur] = EXIT_FAULT;
                if (stop_on_fault) {
                    for (int i = cur + 1; i < n; i++)
                        exits[i] = EXIT_NOT_RUN;
                    return;
                }
                start = cur + 1;
                break;
            }
            if (rc < 0 && (errno == EINTR || errno == EAGAIN))
                continue;
            if (rc < 0)
                die("KVM_RUN");
            if (run->exit_reason == KVM_EXIT_HLT)
                return;
            if (run->exit_reason == KVM_EXIT_MMIO) {
                if (!run->mmio.is_write) {
                    memset(run->mmio.data, 0, sizeof(run->mmio.data)); /* reads of no memory get 0 */
                    if (mailbox_get(CMD_HEADER + cur * CMD_SIZE + CMD_CODE, 4) == CMD_DIGEST)
                        mailbox_put(MB_ABORT_FLAG, 1, 4); /* the digest stops after its first load */
                }
                exits[cur] = EXIT_MMIO;
                continue;
            }
            fprintf(stderr, "SETUP FAILED: unexpected exit reason %u at command %u\n", run->exit_reason, cur);
            exit(2);
        }
    }
}

/* How command i ended, in AccessResult's words; 0 when it completed. */
static int exit_text(int i, char *buf, size_t len)
{
    switch (exits[i]) {
    case EXIT_MMIO: snprintf(buf, len, WORD_MMIO); return 1;
    case EXIT_NOT_RUN: snprintf(buf, len, WORD_NOT_RUN); return 1;
    case EXIT_FAULT:
        snprintf(buf, len, WORD_MEMORY_FAULT, (unsigned long long)faults[i].gpa, (unsigned long long)faults[i].size,
                 (unsigned long long)faults[i].flags);
        return 1;
    default: return 0;
    }
}

/* Loads and stores by the vCPU, all in one run (KvmBackend::guest). */
static void do_guest(const struct access *a, int n)
{
    for (int i = 0; i < n; i++) {
        uint32_t width = a[i].width == 1 ? CMD_W1 : a[i].width == 2 ? CMD_W2 : a[i].width == 4 ? CMD_W4 : CMD_W8;
        post_command(i, (a[i].write ? CMD_WRITE : CMD_READ) | width, a[i].gpa, a[i].write ? a[i].value : 0);
    }
    run_commands(n, 1);
    set_obs(WORD_GUEST_OPEN);
    for (int i = 0; i < n; i++) {
        char item[160];
        if (exit_text(i, item, sizeof(item))) {
        } else if (a[i].write) {
            snprintf(item, sizeof(item), WORD_WROTE);
        } else {
            uint64_t v = command_value(i);
            if (a[i].width < 8)
                v &= (1ULL << (8 * a[i].width)) - 1;
            snprintf(item, sizeof(item), WORD_READ, (unsigned long long)v);
        }
        if (i)
            append(WORD_GUEST_SEP);
        append(item);
    }
    append(WORD_GUEST_CLOSE);
}

static int have_gmem(int id)
{
    if (id >= ngmems || !gmems[id].made) {
        set_obs(WORD_SKIPPED_NO_SUCH_GMEM);
        return 0;
    }
    return 1;
}

static void do_create_gmem(uint64_t size, uint64_t flags)
{
    struct gf_create_guest_memfd args;
    memset(&args, 0, sizeof(args));
    args.size = size;   /* bytes */
    args.flags = flags; /* GF_GUEST_MEMFD_FLAG_MMAP, GF_GUEST_MEMFD_FLAG_INIT_SHARED */
    int fd = ioctl(vm_fd, GF_KVM_CREATE_GUEST_MEMFD, &args);
    set_result(fd < 0 ? -1 : 0);
    /* Every create takes the next id, made or not: g<n> is the n-th create_gmem op. */
    gmems[ngmems].made = fd >= 0;
    gmems[ngmems].fd = fd;
    gmems[ngmems].map = NULL;
    gmems[ngmems].size = size;
    ngmems++;
}

static void do_map(int id)
{
    if (!have_gmem(id))
        return;
    void *room = aligned_anon_map(gmems[id].size, 0);
    void *p = room == MAP_FAILED ? MAP_FAILED
        : mmap(room, gmems[id].size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, gmems[id].fd, 0 /* file offset */);
    if (p != MAP_FAILED)
        gmems[id].map = p;
    else if (room != MAP_FAILED)
        munmap(room, gmems[id].size);
    set_result(p == MAP_FAILED ? -1 : 0);
}

static int slot_index(uint32_t id)
{
    for (int i = 0; i < MAX_SLOTS; i++)
        if (slots[i].used && slots[i].id == id)
            return i;
    return -1;
}

static void slot_forget(int i)
{
    if (i < 0)
        return;
    if (slots[i].anon)
        munmap(slots[i].anon, slots[i].anon_len);
    memset(&slots[i], 0, sizeof(slots[i]));
}

static void do_bind(uint32_t slot, uint32_t flags, int kind, int id, uint64_t gpa, uint64_t size, uint64_t offset)
{
    int gmem_slot = (flags & GF_KVM_MEM_GUEST_MEMFD) != 0;
    uint32_t gfd = 0xffffffffu;
    if (kind == FD_NOT_GMEM) {
        gfd = vm_fd;
    } else if (kind == FD_GMEM && gmem_slot) {
        if (!have_gmem(id))
            return;
        gfd = gmems[id].fd;
    }
    /* The shared side: the file's own mapping where the slot fits in it, else fresh anonymous memory. */
    uint64_t uaddr;
    void *anon = NULL;
    size_t anon_len = 0;
    uint8_t *fmap = (kind == FD_GMEM && gmem_slot && id < ngmems) ? gmems[id].map : NULL;
    if (fmap && offset % PAGE == 0 && offset + size >= offset && offset + size <= gmems[id].size) {
        uaddr = (uint64_t)(uintptr_t)(fmap + offset);
    } else {
        anon_len = size > PAGE ? size : PAGE;
        anon = slot_anon_map(anon_len, gpa);
        if (anon == MAP_FAILED)
            die("slot memory");
        uaddr = (uint64_t)(uintptr_t)anon;
    }
    int rc = set_region(slot, flags, gpa, size, uaddr, gfd, offset);
    set_result(rc);
    if (rc) {
        if (anon)
            munmap(anon, anon_len);
        return;
    }
    slot_forget(slot_index(slot));
    if (size == 0) {
        if (anon)
            munmap(anon, anon_len);
        return;
    }
    for (int i = 0; i < MAX_SLOTS; i++) {
        if (!slots[i].used) {
            slots[i].used = 1;
            slots[i].id = slot;
            slots[i].uaddr = uaddr;
            slots[i].size = size;
            slots[i].anon = anon;
            slots[i].anon_len = anon_len;
            slots[i].guest_memfd = gfd;
            return;
        }
    }
    fprintf(stderr, "SETUP FAILED: more than %d slots\n", MAX_SLOTS);
    exit(2);
}

static void do_unbind(uint32_t slot)
{
    int rc = set_region(slot, 0, 0, 0 /* memory_size 0: delete */, 0, 0, 0);
    set_result(rc);
    if (!rc)
        slot_forget(slot_index(slot));
}

static void do_modify_slot(uint32_t slot, uint64_t gpa, uint32_t flags)
{
    int i = slot_index(slot);
    if (i < 0) {
        set_obs(WORD_SKIPPED_NO_SUCH_SLOT);
        return;
    }
    /* Same size and userspace_addr, new GPA and/or flags; guest_memfd_offset 0 as gmemfuzz sends it. */
    set_result(set_region(slot, flags, gpa, slots[i].size, slots[i].uaddr, slots[i].guest_memfd, 0));
}

static void do_set_attributes(uint64_t address, uint64_t size, uint64_t attributes)
{
    struct gf_memory_attributes a;
    memset(&a, 0, sizeof(a));
    a.address = address;       /* first GPA */
    a.size = size;             /* bytes */
    a.attributes = attributes; /* GF_KVM_MEMORY_ATTRIBUTE_PRIVATE */
    a.flags = 0;
    set_result(ioctl(vm_fd, GF_KVM_SET_MEMORY_ATTRIBUTES, &a));
}

static void do_fallocate(int id, int mode, uint64_t offset, uint64_t len)
{
    if (!have_gmem(id))
        return;
    set_result(fallocate(gmems[id].fd, mode, (off_t)offset, (off_t)len));
}

static void do_truncate(int id, uint64_t size)
{
    if (!have_gmem(id))
        return;
    set_result(ftruncate(gmems[id].fd, (off_t)size));
}

/* The mapping of file `id`, or NULL after saying why an op on it is skipped. */
static uint8_t *mapping_of(int id)
{
    if (!have_gmem(id))
        return NULL;
    if (!gmems[id].map)
        set_obs(WORD_SKIPPED_NOT_MAPPED);
    return gmems[id].map;
}

static void do_mbind(int id, uint64_t offset, uint64_t len, uint32_t mode, uint64_t nodes, uint32_t flags)
{
    uint8_t *map = mapping_of(id);
    if (!map)
        return;
    unsigned long mask = nodes;
    set_result(syscall(SYS_mbind, map + offset, (unsigned long)len, (unsigned long)mode, &mask, (unsigned long)GF_MPOL_MAXNODE, (unsigned)flags) ? -1 : 0);
}

static void do_get_mempolicy(int id, uint64_t offset)
{
    uint8_t *map = mapping_of(id);
    if (!map)
        return;
    int mode = 0;
    unsigned long nodes = 0;
    if (syscall(SYS_get_mempolicy, &mode, &nodes, (unsigned long)GF_MPOL_MAXNODE, map + offset, (unsigned long)GF_MPOL_F_ADDR)) {
        set_result(-1);
        return;
    }
    uint64_t value = ((uint64_t)mode & ((1ULL << GF_MPOL_MODE_BITS) - 1)) | (uint64_t)nodes << GF_MPOL_MODE_BITS;
    snprintf(obs, sizeof(obs), WORD_VALUE, (unsigned long long)value);
}

static void do_pre_fault(uint64_t gpa, uint64_t size)
{
    struct gf_pre_fault_memory range = { .gpa = gpa, .size = size };
    if (ioctl(vcpu_fd, GF_KVM_PRE_FAULT_MEMORY, &range)) {
        set_result(-1);
        return;
    }
    snprintf(obs, sizeof(obs), WORD_VALUE, (unsigned long long)range.size);
}

static void do_close_gmem(int id)
{
    if (!have_gmem(id))
        return;
    set_result(close(gmems[id].fd));
    gmems[id].fd = -1;
}

static void do_unmap(int id)
{
    if (!have_gmem(id))
        return;
    /* Unmap, keeping the range reserved so no later mapping lands where a slot still points. */
    void *p = mmap(gmems[id].map, gmems[id].size, PROT_NONE, MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED)
        die("munmap (MAP_FIXED PROT_NONE)");
    gmems[id].map = NULL;
    set_obs(WORD_OK);
}

static void do_destroy_vm(void)
{
    for (int k = 1; k < MAX_VCPUS; k++) {
        if (extra_run[k])
            munmap(extra_run[k], run_size);
        if (extra_fd[k] > 0)
            close(extra_fd[k]);
        extra_fd[k] = 0;
        extra_run[k] = NULL;
    }
    munmap(run, run_size);
    close(vcpu_fd);
    close(vm_fd);
    vcpu_fd = vm_fd = -1;
    /* The slots live on in the VM the files keep alive; their anonymous memory may go. */
    for (int i = 0; i < MAX_SLOTS; i++)
        slot_forget(i);
    set_obs(WORD_OK);
}

static __thread sigjmp_buf bus_jmp;
static __thread volatile sig_atomic_t bus_armed;

static void on_sigbus(int sig)
{
    if (bus_armed)
        siglongjmp(bus_jmp, 1);
    signal(sig, SIG_DFL);
}

/* Arms the SIGBUS catch for what follows in the calling function, which runs `on_bus` (and
 * disarms) if one arrives. A macro: sigsetjmp() must be called in the frame it returns to. */
#define CATCH_SIGBUS(on_bus)                 \
    do {                                     \
        signal(SIGBUS, on_sigbus);           \
        if (sigsetjmp(bus_jmp, 1)) {         \
            bus_armed = 0;                   \
            on_bus;                          \
        }                                    \
        bus_armed = 1;                       \
    } while (0)

static void do_madvise(int id, uint64_t offset, uint64_t len, uint32_t advice)
{
    uint8_t *map = mapping_of(id);
    if (!map)
        return;
    /* MADV_HWPOISON on a dirty page: memory_failure() sends this thread SIGBUS
     * (BUS_MCEERR_AR) before the call returns; that is the outcome. */
    CATCH_SIGBUS({ set_obs(WORD_SIGBUS); return; });
    int rc = madvise(map + offset, (size_t)len, (int)advice);
    bus_armed = 0;
    set_result(rc);
}

static void do_host_access(int id, uint64_t offset, int width, int store, uint64_t value)
{
    uint8_t *map = mapping_of(id);
    if (!map)
        return;
    volatile uint8_t *p = map + offset;
    volatile uint64_t v = 0;
    CATCH_SIGBUS({ set_obs(WORD_SIGBUS); return; });
    switch (width) {
    case 1: if (store) *(volatile uint8_t *)p = value; else v = *(volatile uint8_t *)p; break;
    case 2: if (store) *(volatile uint16_t *)p = value; else v = *(volatile uint16_t *)p; break;
    case 4: if (store) *(volatile uint32_t *)p = value; else v = *(volatile uint32_t *)p; break;
    default: if (store) *(volatile uint64_t *)p = value; else v = *(volatile uint64_t *)p; break;
    }
    bus_armed = 0;
    if (store)
        set_obs(WORD_OK);
    else
        snprintf(obs, sizeof(obs), WORD_VALUE, (unsigned long long)v);
}

/* ---- State probes: what the runner compares after invalidating ops (KvmBackend::observe). ---- */

/* FNV-1a over the page's little-endian dwords (outcome::page_digest; the guest computes the same). */
static uint32_t digest_page(const uint8_t *p)
{
    uint32_t h = FNV_OFFSET_BASIS;
    for (size_t i = 0; i < PAGE; i += 4) {
        uint32_t w;
        memcpy(&w, p + i, 4);
        h = (h ^ w) * FNV_PRIME;
    }
    return h;
}

/* Copies a page with 8-byte loads; -1 on SIGBUS. */
static int read_page(const uint8_t *src, uint8_t *dst)
{
    CATCH_SIGBUS(return -1);
    for (size_t i = 0; i < PAGE; i += 8) {
        uint64_t v = *(volatile const uint64_t *)(src + i);
        memcpy(dst + i, &v, 8);
    }
    bus_armed = 0;
    return 0;
}

static void observe_page(const uint8_t *src)
{
    static uint8_t page[PAGE];
    if (read_page(src, page))
        set_obs(OBS_SIGBUS);
    else
        snprintf(obs, sizeof(obs), OBS_DIGEST, digest_page(page));
}

static void report_probe(int index, const char *what, const char *expected)
{
    if (!comparing)
        expected = NULL;
    int same = !expected || strcmp(obs, expected) == 0;
    printf("      after #%d, %s: model %s, kvm %s%s\n", index, what,
           expected ? expected : comparing ? "(either)" : "(not compared after a group)", obs,
           same ? "" : "    <== DIFFERS");
    if (!same)
        failures++;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The VM's part of the software platform's reverse map, "pfn gfn mapped" a line
 * (KvmBackend::observe_platform): its GFNs, ascending. 0 where this kernel keeps none
 * (no CONFIG_KVM_SW_PROTECTED_RMP): then nothing is compared. */
static int probe_platform_map(void)
{
    char path[128];
    snprintf(path, sizeof(path), "/sys/kernel/debug/kvm/%d-%d/sw_rmp", vm_tid, vm_fd);
    FILE *f = vm_fd < 0 ? NULL : fopen(path, "r");
    if (!f) {
        set_obs(OBS_ABSENT);
        return 0;
    }
    static uint64_t gfns[1 << 16];
    size_t n = 0;
    unsigned long long pfn, gfn;
    int mapped;
    while (n < sizeof(gfns) / sizeof(gfns[0]) && fscanf(f, "%llx %llx %d", &pfn, &gfn, &mapped) == 3)
        gfns[n++] = gfn;
    fclose(f);
    qsort(gfns, n, sizeof(gfns[0]), cmp_u64);
    set_obs(OBS_PLATFORM_OPEN);
    for (size_t i = 0; i < n; i++) {
        char item[32];
        snprintf(item, sizeof(item), OBS_PLATFORM_GFN, (unsigned long long)gfns[i]);
        if (i)
            append(OBS_PLATFORM_SEP);
        append(item);
    }
    append(OBS_PLATFORM_CLOSE);
    return 1;
}

static void probe_residency(int id, uint64_t max_pages)
{
    if (id >= ngmems || !gmems[id].made) {
        set_obs(OBS_ABSENT);
        return;
    }
    uint8_t *map = gmems[id].map;
    /* Unmapped with its fd open: a mapping for the probe alone (KvmBackend::observe_host). */
    uint8_t *probe_map = NULL;
    if (!map && gmems[id].fd >= 0 && gmems[id].size <= MAX_MAPPED_BYTES) {
        void *p = mmap(NULL, gmems[id].size, PROT_READ | PROT_WRITE, MAP_SHARED, gmems[id].fd, 0);
        if (p != MAP_FAILED)
            map = probe_map = p;
    }
    if (!map) {
        set_obs(OBS_ABSENT);
        return;
    }
    uint64_t pages = gmems[id].size / PAGE;
    if (pages > max_pages)
        pages = max_pages;
    static unsigned char vec[MAX_RESIDENCY_PAGES];
    int failed = pages > sizeof(vec) || mincore(map, pages * PAGE, vec);
    if (probe_map)
        munmap(probe_map, gmems[id].size);
    if (failed) {
        set_obs(OBS_ABSENT);
        return;
    }
    set_obs(OBS_RESIDENT_OPEN);
    for (uint64_t i = 0; i < pages; i++)
        append(vec[i] & 1 ? OBS_RESIDENT_YES : OBS_RESIDENT_NO);
    append(OBS_RESIDENT_CLOSE);
}

static void probe_host_page(int id, uint64_t page)
{
    if (id >= ngmems || !gmems[id].map || (page + 1) * PAGE > gmems[id].size) {
        set_obs(OBS_ABSENT);
        return;
    }
    observe_page(gmems[id].map + page * PAGE);
}

static void probe_anon_page(uint32_t slot, uint64_t page)
{
    int i = slot_index(slot);
    if (i < 0 || !slots[i].anon || (page + 1) * PAGE > slots[i].anon_len) {
        set_obs(OBS_ABSENT);
        return;
    }
    observe_page((const uint8_t *)slots[i].anon + page * PAGE);
}

/* Guest page digests, all in one run; a memory fault resumes at the next command (KvmBackend::observe). */
static void probe_guest_pages(int index, int n, const uint64_t *gpas, const uint64_t *samples, const char *const *what, const char *const *expected)
{
    if (vm_fd < 0) {
        set_obs(OBS_ABSENT);
        for (int i = 0; i < n; i++)
            report_probe(index, what[i], expected[i]);
        return;
    }
    for (int i = 0; i < n; i++)
        post_command(i, CMD_DIGEST, gpas[i] & ~(PAGE - 1), samples[i] /* the qwords the guest digests */);
    run_commands(n, 0);
    for (int i = 0; i < n; i++) {
        char item[160];
        if (exit_text(i, item, sizeof(item)))
            snprintf(obs, sizeof(obs), OBS_GUEST_EXIT "%s", item);
        else
            snprintf(obs, sizeof(obs), OBS_DIGEST, (uint32_t)command_value(i));
        report_probe(index, what[i], expected[i]);
    }
}

/* ---- Concurrent groups (gmemfuzz_backends::group, KvmBackend's kvm/race.rs) ---- */

/* One member: its op, repeated, on its own thread; guest members on vCPU `vcpu`. */
struct member {
    void (*op)(void);
    int repeat;
    int vcpu;           /* -1: not a guest member */
    const char *line;
    const char *skip;   /* the model skips it: not sent (a reason), else NULL */
    char seen[64][1024]; /* what each repetition did */
};

static pthread_barrier_t group_barrier;

static void *member_main(void *arg)
{
    struct member *m = arg;
    my_vcpu = m->vcpu > 0 ? m->vcpu : 0;
    pthread_barrier_wait(&group_barrier);
    for (int r = 0; r < m->repeat; r++) {
        m->op();
        snprintf(m->seen[r], sizeof(m->seen[r]), "%.*s", (int)sizeof(m->seen[r]) - 1, obs); /* an op's result: short */
    }
    return NULL;
}

/* Runs the members of op #index at the same time, released by a barrier, and shows what each
 * did. Which results are allowed depends on the order the members took: the model's set of
 * them comes from its search (`gmemfuzz replay` checks it). Where every order ends in one
 * state (`one_end`), what follows is compared as after any op; otherwise from here on the
 * program shows what it sees and compares nothing. */
static void run_group(int index, struct member *m, int n, int one_end)
{
    for (int i = 0; i < n; i++)
        if (m[i].vcpu > 0 && !extra_fd[m[i].vcpu] && vm_fd >= 0)
            extra_fd[m[i].vcpu] = make_vcpu(m[i].vcpu, &extra_run[m[i].vcpu]);
    int running = 0;
    for (int i = 0; i < n; i++)
        running += !m[i].skip;
    pthread_t threads[8];
    if (running && pthread_barrier_init(&group_barrier, NULL, running))
        die("pthread_barrier_init");
    for (int i = 0; i < n; i++)
        if (!m[i].skip && pthread_create(&threads[i], NULL, member_main, &m[i]))
            die("pthread_create");
    for (int i = 0; i < n; i++)
        if (!m[i].skip)
            pthread_join(threads[i], NULL);
    if (running)
        pthread_barrier_destroy(&group_barrier);
    printf("#%-3d group: %d members at the same time (not compared: the order they took decides%s)\n", index, n,
           one_end && comparing ? "; every order ends in one state, compared below" : "");
    for (int i = 0; i < n; i++) {
        printf("      member %d: %s\n", i, m[i].line);
        if (m[i].skip) {
            printf("        skipped by every backend (%s): not sent\n", m[i].skip);
            continue;
        }
        for (int r = 0; r < m[i].repeat;) {
            int k = r;
            while (k < m[i].repeat && strcmp(m[i].seen[k], m[i].seen[r]) == 0)
                k++;
            printf("        kvm: %s x%d\n", m[i].seen[r], k - r);
            r = k;
        }
    }
    if (!one_end)
        comparing = 0;
}
