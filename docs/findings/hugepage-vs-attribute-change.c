/*
 * gmemfuzz C reproducer (generated; see harness/src/repro/c.rs).
 * Kernel release: 7.2 (assumed)
 * Profile: kernel 7.2 (assumed) vm_type 1 guest_memfd true gmem_flags 0x1 attributes_ioctl true attributes 0x8 gmem_only_slots true bound_range_errno EEXIST bound_range_late false address_spaces 1 falloc_write_zeroes true max_gfn 0xfffffff numa_nodes 0x1 file_policy true move_all true pre_fault ok platform_map false hwpoison EINVAL
 * VM type: 1
 * Note: expectations computed for an assumed profile: real KVM was not available (not available here: kernel 6.18.44-fc-v1300: KVM offers no VM type 1 (KVM_CAP_VM_TYPES))
 *
 * Build: gcc -static -O2 -Wall -o repro repro.c   Run as a user with access to /dev/kvm.
 * Exit status: 1 when an observation differs from the model's expectation, 0 when all agree,
 * 2 when setup fails.
 *
 * The program:
 *   gmemfuzz-program v3
 *   bind slot=8 flags=0x0 fd=g0 gpa=0x69600000 size=0x200000 offset=0x0
 *   group
 *     x8 guest r1@0x69602018
 *     x2 set_attributes gpa=0x69603000 size=0x1fd000 attributes=PRIVATE
 *   end
 *   guest r1@0x69603000
 */
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


/* The harness layout (gmemfuzz_backends::abi::layout, abi::mailbox). */
#define PAGE 0x1000ULL
#define CODE_SLOT 0
#define MAILBOX_SLOT 1
#define CODE_GPA 0x10000ULL
#define CODE_SIZE 0x10000ULL
#define MAILBOX_GPA 0x20000ULL
#define MAILBOX_SIZE 0x10000ULL
#define STACK_TOP 0x30000ULL
#define MAX_MAPPED_BYTES 0x40000000ULL
#define MAX_RESIDENCY_PAGES 256

/* The mailbox: byte offsets (abi::mailbox). */
#define MB_COUNT 0
#define MB_CURRENT 4
#define MB_START 8
#define MB_ABORT_FLAG 12
#define MB_VCPU_STRIDE 12288
#define CMD_HEADER 16
#define CMD_SIZE 16
#define CMD_CODE 0
#define CMD_GPA 4
#define CMD_VALUE 8
#define MAX_COMMANDS 3839

/* Guest interpreter command codes (abi::command). */
#define CMD_READ 0x0u
#define CMD_WRITE 0x10u
#define CMD_DIGEST 0x20u
#define CMD_W1 0x1u
#define CMD_W2 0x2u
#define CMD_W4 0x3u
#define CMD_W8 0x4u

/* The vCPU's start state (abi::cpu). */
#define CPU_CODE_SELECTOR 0x8
#define CPU_CODE_TYPE 0xb
#define CPU_DATA_SELECTOR 0x10
#define CPU_DATA_TYPE 0x3
#define CPU_RFLAGS 0x2

/* FNV-1a, the page and sample digests (abi::fnv). */
#define FNV_OFFSET_BASIS 0x811c9dc5u
#define FNV_PRIME 0x1000193u

/* uapi values, under our own names so they never clash with a header that has them (abi). */
#define GF_KVM_EXIT_MEMORY_FAULT 39
#define GF_KVM_MEM_GUEST_MEMFD 0x4u
#define GF_GUEST_MEMFD_FLAG_MMAP 0x1ULL
#define GF_GUEST_MEMFD_FLAG_INIT_SHARED 0x2ULL
#define GF_KVM_MEMORY_ATTRIBUTE_PRIVATE 0x8ULL
#define GF_FALLOC_PUNCH 0x3 /* FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE */
#define GF_MPOL_MAXNODE 65 /* a one-word node mask: the kernel reads maxnode - 1 bits */
#define GF_MPOL_F_ADDR 0x2u
#define GF_MPOL_MODE_BITS 16 /* get_mempolicy's value: the mode word below, the nodes above */

/* The words gmemfuzz prints: Display of Outcome and AccessResult, and of the observations. */
#define WORD_OK "ok"
#define WORD_ERROR_NAMED "error %s"
#define WORD_ERROR_NUMBER "error errno %d"
#define WORD_VALUE "value 0x%llx"
#define WORD_SIGBUS "SIGBUS"
#define WORD_SKIPPED_NO_SUCH_GMEM "skipped (NoSuchGmem)"
#define WORD_SKIPPED_NO_SUCH_SLOT "skipped (NoSuchSlot)"
#define WORD_SKIPPED_NOT_MAPPED "skipped (NotMapped)"
#define WORD_GUEST_OPEN "["
#define WORD_GUEST_SEP ", "
#define WORD_GUEST_CLOSE "]"
#define WORD_READ "read 0x%llx"
#define WORD_WROTE "wrote"
#define WORD_MMIO "mmio-exit"
#define WORD_NOT_RUN "not-run"
#define WORD_MEMORY_FAULT "memory-fault(gpa=0x%llx size=0x%llx flags=0x%llx)"
#define OBS_DIGEST "digest 0x%08x"
#define OBS_SIGBUS "SIGBUS"
#define OBS_ABSENT "absent"
#define OBS_RESIDENT_OPEN "resident ["
#define OBS_RESIDENT_YES "1"
#define OBS_RESIDENT_NO "0"
#define OBS_RESIDENT_CLOSE "]"
#define OBS_PLATFORM_OPEN "platform ["
#define OBS_PLATFORM_SEP " "
#define OBS_PLATFORM_GFN "0x%llx"
#define OBS_PLATFORM_CLOSE "]"
#define OBS_GUEST_EXIT "guest exit: "

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
    case 1: return "EPERM";
    case 2: return "ENOENT";
    case 3: return "ESRCH";
    case 4: return "EINTR";
    case 5: return "EIO";
    case 6: return "ENXIO";
    case 7: return "E2BIG";
    case 8: return "ENOEXEC";
    case 9: return "EBADF";
    case 10: return "ECHILD";
    case 11: return "EAGAIN";
    case 12: return "ENOMEM";
    case 13: return "EACCES";
    case 14: return "EFAULT";
    case 15: return "ENOTBLK";
    case 16: return "EBUSY";
    case 17: return "EEXIST";
    case 18: return "EXDEV";
    case 19: return "ENODEV";
    case 20: return "ENOTDIR";
    case 21: return "EISDIR";
    case 22: return "EINVAL";
    case 23: return "ENFILE";
    case 24: return "EMFILE";
    case 25: return "ENOTTY";
    case 26: return "ETXTBSY";
    case 27: return "EFBIG";
    case 28: return "ENOSPC";
    case 29: return "ESPIPE";
    case 30: return "EROFS";
    case 31: return "EMLINK";
    case 32: return "EPIPE";
    case 33: return "EDOM";
    case 34: return "ERANGE";
    case 35: return "EDEADLK";
    case 36: return "ENAMETOOLONG";
    case 37: return "ENOLCK";
    case 38: return "ENOSYS";
    case 39: return "ENOTEMPTY";
    case 40: return "ELOOP";
    case 42: return "ENOMSG";
    case 43: return "EIDRM";
    case 44: return "ECHRNG";
    case 45: return "EL2NSYNC";
    case 46: return "EL3HLT";
    case 47: return "EL3RST";
    case 48: return "ELNRNG";
    case 49: return "EUNATCH";
    case 50: return "ENOCSI";
    case 51: return "EL2HLT";
    case 52: return "EBADE";
    case 53: return "EBADR";
    case 54: return "EXFULL";
    case 55: return "ENOANO";
    case 56: return "EBADRQC";
    case 57: return "EBADSLT";
    case 59: return "EBFONT";
    case 60: return "ENOSTR";
    case 61: return "ENODATA";
    case 62: return "ETIME";
    case 63: return "ENOSR";
    case 64: return "ENONET";
    case 65: return "ENOPKG";
    case 66: return "EREMOTE";
    case 67: return "ENOLINK";
    case 68: return "EADV";
    case 69: return "ESRMNT";
    case 70: return "ECOMM";
    case 71: return "EPROTO";
    case 72: return "EMULTIHOP";
    case 73: return "EDOTDOT";
    case 74: return "EBADMSG";
    case 75: return "EOVERFLOW";
    case 76: return "ENOTUNIQ";
    case 77: return "EBADFD";
    case 78: return "EREMCHG";
    case 79: return "ELIBACC";
    case 80: return "ELIBBAD";
    case 81: return "ELIBSCN";
    case 82: return "ELIBMAX";
    case 83: return "ELIBEXEC";
    case 84: return "EILSEQ";
    case 85: return "ERESTART";
    case 86: return "ESTRPIPE";
    case 87: return "EUSERS";
    case 88: return "ENOTSOCK";
    case 89: return "EDESTADDRREQ";
    case 90: return "EMSGSIZE";
    case 91: return "EPROTOTYPE";
    case 92: return "ENOPROTOOPT";
    case 93: return "EPROTONOSUPPORT";
    case 94: return "ESOCKTNOSUPPORT";
    case 95: return "EOPNOTSUPP";
    case 96: return "EPFNOSUPPORT";
    case 97: return "EAFNOSUPPORT";
    case 98: return "EADDRINUSE";
    case 99: return "EADDRNOTAVAIL";
    case 100: return "ENETDOWN";
    case 101: return "ENETUNREACH";
    case 102: return "ENETRESET";
    case 103: return "ECONNABORTED";
    case 104: return "ECONNRESET";
    case 105: return "ENOBUFS";
    case 106: return "EISCONN";
    case 107: return "ENOTCONN";
    case 108: return "ESHUTDOWN";
    case 109: return "ETOOMANYREFS";
    case 110: return "ETIMEDOUT";
    case 111: return "ECONNREFUSED";
    case 112: return "EHOSTDOWN";
    case 113: return "EHOSTUNREACH";
    case 114: return "EALREADY";
    case 115: return "EINPROGRESS";
    case 116: return "ESTALE";
    case 117: return "EUCLEAN";
    case 118: return "ENOTNAM";
    case 119: return "ENAVAIL";
    case 120: return "EISNAM";
    case 121: return "EREMOTEIO";
    case 122: return "EDQUOT";
    case 123: return "ENOMEDIUM";
    case 124: return "EMEDIUMTYPE";
    case 125: return "ECANCELED";
    case 126: return "ENOKEY";
    case 127: return "EKEYEXPIRED";
    case 128: return "EKEYREVOKED";
    case 129: return "EKEYREJECTED";
    case 130: return "EOWNERDEAD";
    case 131: return "ENOTRECOVERABLE";
    case 132: return "ERFKILL";
    case 133: return "EHWPOISON";

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

/* The guest: a 32-bit command interpreter (gmemfuzz_backends::kvm::guest::assemble()), run at 0x10000. */
static const unsigned char guest_code[385] = {
    0x8d,0x5d,0x10,0x8b,0x4d,0x08,0x3b,0x4d,0x00,0x0f,0x83,0x71,0x01,0x00,0x00,0x89,
    0x4d,0x04,0x89,0xce,0xc1,0xe6,0x04,0x01,0xde,0x8b,0x06,0x8b,0x7e,0x04,0x3d,0x01,
    0x00,0x00,0x00,0x74,0x3a,0x3d,0x02,0x00,0x00,0x00,0x74,0x45,0x3d,0x03,0x00,0x00,
    0x00,0x74,0x50,0x3d,0x04,0x00,0x00,0x00,0x74,0x5a,0x3d,0x11,0x00,0x00,0x00,0x74,
    0x63,0x3d,0x12,0x00,0x00,0x00,0x74,0x66,0x3d,0x13,0x00,0x00,0x00,0x74,0x6b,0x3d,
    0x14,0x00,0x00,0x00,0x74,0x6e,0x3d,0x20,0x00,0x00,0x00,0x74,0x77,0x0f,0x0b,0x0f,
    0xb6,0x17,0x89,0x56,0x08,0xc7,0x46,0x0c,0x00,0x00,0x00,0x00,0xe9,0x09,0x01,0x00,
    0x00,0x0f,0xb7,0x17,0x89,0x56,0x08,0xc7,0x46,0x0c,0x00,0x00,0x00,0x00,0xe9,0xf7,
    0x00,0x00,0x00,0x8b,0x17,0x89,0x56,0x08,0xc7,0x46,0x0c,0x00,0x00,0x00,0x00,0xe9,
    0xe6,0x00,0x00,0x00,0x8b,0x17,0x89,0x56,0x08,0x8b,0x57,0x04,0x89,0x56,0x0c,0xe9,
    0xd6,0x00,0x00,0x00,0x8a,0x56,0x08,0x88,0x17,0xe9,0xcc,0x00,0x00,0x00,0x66,0x8b,
    0x56,0x08,0x66,0x89,0x17,0xe9,0xc0,0x00,0x00,0x00,0x8b,0x56,0x08,0x89,0x17,0xe9,
    0xb6,0x00,0x00,0x00,0x8b,0x56,0x08,0x89,0x17,0x8b,0x56,0x0c,0x89,0x57,0x04,0xe9,
    0xa6,0x00,0x00,0x00,0x8b,0x17,0x83,0x7d,0x0c,0x00,0x0f,0x85,0x91,0x00,0x00,0x00,
    0xb8,0xc5,0x9d,0x1c,0x81,0x0f,0xb7,0x56,0x08,0x81,0xe2,0xff,0x01,0x00,0x00,0xc1,
    0xe2,0x03,0x01,0xfa,0x33,0x02,0x69,0xc0,0x93,0x01,0x00,0x01,0x33,0x42,0x04,0x69,
    0xc0,0x93,0x01,0x00,0x01,0x0f,0xb7,0x56,0x0a,0x81,0xe2,0xff,0x01,0x00,0x00,0xc1,
    0xe2,0x03,0x01,0xfa,0x33,0x02,0x69,0xc0,0x93,0x01,0x00,0x01,0x33,0x42,0x04,0x69,
    0xc0,0x93,0x01,0x00,0x01,0x0f,0xb7,0x56,0x0c,0x81,0xe2,0xff,0x01,0x00,0x00,0xc1,
    0xe2,0x03,0x01,0xfa,0x33,0x02,0x69,0xc0,0x93,0x01,0x00,0x01,0x33,0x42,0x04,0x69,
    0xc0,0x93,0x01,0x00,0x01,0x0f,0xb7,0x56,0x0e,0x81,0xe2,0xff,0x01,0x00,0x00,0xc1,
    0xe2,0x03,0x01,0xfa,0x33,0x02,0x69,0xc0,0x93,0x01,0x00,0x01,0x33,0x42,0x04,0x69,
    0xc0,0x93,0x01,0x00,0x01,0x89,0x46,0x08,0xc7,0x46,0x0c,0x00,0x00,0x00,0x00,0xeb,
    0x09,0xc7,0x45,0x0c,0x00,0x00,0x00,0x00,0xeb,0x00,0x41,0xe9,0x86,0xfe,0xff,0xff,
    0xf4,
};


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

static void group1_member0(void) /* guest r1@0x69602018 */
{
    do_guest((const struct access[]){
            { 0x69602018ULL /* gpa */, 1 /* width */, 0 /* load */, 0x0ULL /* value */ },
        }, 1);
}

static void group1_member1(void) /* set_attributes gpa=0x69603000 size=0x1fd000 attributes=PRIVATE */
{
    do_set_attributes(0x69603000ULL /* address */, 0x1fd000ULL /* size */, 0x8ULL /* attributes */);
}

int main(void)
{
    setup(1 /* KVM_CREATE_VM type */);

    /* op #0: bind slot=8 flags=0x0 fd=g0 gpa=0x69600000 size=0x200000 offset=0x0 */
    do_bind(8 /* slot */, 0x0 /* flags */, FD_GMEM, 0 /* g0 */, 0x69600000ULL /* guest_phys_addr */, 0x200000ULL /* memory_size */, 0x0ULL /* guest_memfd_offset */);
    report(0, "bind slot=8 flags=0x0 fd=g0 gpa=0x69600000 size=0x200000 offset=0x0", "ok");

    /* op #1: group
  x8 guest r1@0x69602018
  x2 set_attributes gpa=0x69603000 size=0x1fd000 attributes=PRIVATE
end */
    {
        static struct member m[2] = {
            { group1_member0, 8 /* repeat */, 0 /* vCPU */, "guest r1@0x69602018", NULL, {{0}} },
            { group1_member1, 2 /* repeat */, -1 /* vCPU */, "set_attributes gpa=0x69603000 size=0x1fd000 attributes=PRIVATE", NULL, {{0}} },
        };
        run_group(1, m, 2, 1 /* every order ends in one state */);
    }
    probe_anon_page(8 /* slot */, 0 /* page */); report_probe(1, "AnonPage { slot: 8, page: 0 }", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 1 /* page */); report_probe(1, "AnonPage { slot: 8, page: 1 }", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 2 /* page */); report_probe(1, "AnonPage { slot: 8, page: 2 }", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 3 /* page */); report_probe(1, "AnonPage { slot: 8, page: 3 }", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 4 /* page */); report_probe(1, "AnonPage { slot: 8, page: 4 }", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 5 /* page */); report_probe(1, "AnonPage { slot: 8, page: 5 }", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 6 /* page */); report_probe(1, "AnonPage { slot: 8, page: 6 }", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 7 /* page */); report_probe(1, "AnonPage { slot: 8, page: 7 }", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 8 /* page */); report_probe(1, "AnonPage { slot: 8, page: 8 }", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 9 /* page */); report_probe(1, "AnonPage { slot: 8, page: 9 }", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 10 /* page */); report_probe(1, "AnonPage { slot: 8, page: 10 }", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 11 /* page */); report_probe(1, "AnonPage { slot: 8, page: 11 }", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 12 /* page */); report_probe(1, "AnonPage { slot: 8, page: 12 }", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 13 /* page */); report_probe(1, "AnonPage { slot: 8, page: 13 }", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 14 /* page */); report_probe(1, "AnonPage { slot: 8, page: 14 }", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 15 /* page */); report_probe(1, "AnonPage { slot: 8, page: 15 }", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 16 /* page */); report_probe(1, "AnonPage { slot: 8, page: 16 }", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 17 /* page */); report_probe(1, "AnonPage { slot: 8, page: 17 }", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 18 /* page */); report_probe(1, "AnonPage { slot: 8, page: 18 }", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 19 /* page */); report_probe(1, "AnonPage { slot: 8, page: 19 }", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 20 /* page */); report_probe(1, "AnonPage { slot: 8, page: 20 }", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 21 /* page */); report_probe(1, "AnonPage { slot: 8, page: 21 }", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 22 /* page */); report_probe(1, "AnonPage { slot: 8, page: 22 }", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 23 /* page */); report_probe(1, "AnonPage { slot: 8, page: 23 }", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 24 /* page */); report_probe(1, "AnonPage { slot: 8, page: 24 }", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 25 /* page */); report_probe(1, "AnonPage { slot: 8, page: 25 }", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 26 /* page */); report_probe(1, "AnonPage { slot: 8, page: 26 }", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 27 /* page */); report_probe(1, "AnonPage { slot: 8, page: 27 }", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 28 /* page */); report_probe(1, "AnonPage { slot: 8, page: 28 }", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 29 /* page */); report_probe(1, "AnonPage { slot: 8, page: 29 }", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 30 /* page */); report_probe(1, "AnonPage { slot: 8, page: 30 }", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 31 /* page */); report_probe(1, "AnonPage { slot: 8, page: 31 }", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 32 /* page */); report_probe(1, "AnonPage { slot: 8, page: 32 }", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 33 /* page */); report_probe(1, "AnonPage { slot: 8, page: 33 }", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 34 /* page */); report_probe(1, "AnonPage { slot: 8, page: 34 }", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 35 /* page */); report_probe(1, "AnonPage { slot: 8, page: 35 }", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 36 /* page */); report_probe(1, "AnonPage { slot: 8, page: 36 }", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 37 /* page */); report_probe(1, "AnonPage { slot: 8, page: 37 }", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 38 /* page */); report_probe(1, "AnonPage { slot: 8, page: 38 }", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 39 /* page */); report_probe(1, "AnonPage { slot: 8, page: 39 }", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 40 /* page */); report_probe(1, "AnonPage { slot: 8, page: 40 }", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 41 /* page */); report_probe(1, "AnonPage { slot: 8, page: 41 }", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 42 /* page */); report_probe(1, "AnonPage { slot: 8, page: 42 }", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 43 /* page */); report_probe(1, "AnonPage { slot: 8, page: 43 }", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 44 /* page */); report_probe(1, "AnonPage { slot: 8, page: 44 }", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 45 /* page */); report_probe(1, "AnonPage { slot: 8, page: 45 }", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 46 /* page */); report_probe(1, "AnonPage { slot: 8, page: 46 }", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 47 /* page */); report_probe(1, "AnonPage { slot: 8, page: 47 }", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 48 /* page */); report_probe(1, "AnonPage { slot: 8, page: 48 }", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 49 /* page */); report_probe(1, "AnonPage { slot: 8, page: 49 }", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 50 /* page */); report_probe(1, "AnonPage { slot: 8, page: 50 }", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 51 /* page */); report_probe(1, "AnonPage { slot: 8, page: 51 }", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 52 /* page */); report_probe(1, "AnonPage { slot: 8, page: 52 }", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 53 /* page */); report_probe(1, "AnonPage { slot: 8, page: 53 }", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 54 /* page */); report_probe(1, "AnonPage { slot: 8, page: 54 }", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 55 /* page */); report_probe(1, "AnonPage { slot: 8, page: 55 }", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 56 /* page */); report_probe(1, "AnonPage { slot: 8, page: 56 }", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 57 /* page */); report_probe(1, "AnonPage { slot: 8, page: 57 }", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 58 /* page */); report_probe(1, "AnonPage { slot: 8, page: 58 }", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 59 /* page */); report_probe(1, "AnonPage { slot: 8, page: 59 }", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 60 /* page */); report_probe(1, "AnonPage { slot: 8, page: 60 }", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 61 /* page */); report_probe(1, "AnonPage { slot: 8, page: 61 }", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 62 /* page */); report_probe(1, "AnonPage { slot: 8, page: 62 }", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 63 /* page */); report_probe(1, "AnonPage { slot: 8, page: 63 }", "digest 0x1f116dc5");
    { /* guest page digests, one run */
        static const uint64_t gpas[5] = { 0x69602000ULL, 0x69600000ULL, 0x69601000ULL, 0x69603000ULL, 0x69604000ULL };
        static const uint64_t samples[5] = { 0x80010001ff0000ULL, 0x80010001ff0000ULL, 0x80010001ff0000ULL, 0x80010001ff0000ULL, 0x80010001ff0000ULL }; /* sampled qword indices, 4 x u16 */
        static const char *const what[5] = { "GuestPage { gpa: 1767907328, sample: [0, 511, 256, 128] }", "GuestPage { gpa: 1767899136, sample: [0, 511, 256, 128] }", "GuestPage { gpa: 1767903232, sample: [0, 511, 256, 128] }", "GuestPage { gpa: 1767911424, sample: [0, 511, 256, 128] }", "GuestPage { gpa: 1767915520, sample: [0, 511, 256, 128] }" };
        static const char *const expected[5] = { "digest 0x9be17165", "digest 0x9be17165", "digest 0x9be17165", "guest exit: memory-fault(gpa=0x69603000 size=0x1000 flags=0x8)", "guest exit: memory-fault(gpa=0x69604000 size=0x1000 flags=0x8)" };
        probe_guest_pages(1, 5, gpas, samples, what, expected);
    }

    /* op #2: guest r1@0x69603000 */
    do_guest((const struct access[]){
            { 0x69603000ULL /* gpa */, 1 /* width */, 0 /* load */, 0x0ULL /* value */ },
        }, 1);
    report(2, "guest r1@0x69603000", "[memory-fault(gpa=0x69603000 size=0x1000 flags=0x8)]");

    /* end of program: the runner compares the final state once more */
    probe_anon_page(8 /* slot */, 0 /* page */); report_probe(2, "AnonPage { slot: 8, page: 0 } (end of program)", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 1 /* page */); report_probe(2, "AnonPage { slot: 8, page: 1 } (end of program)", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 2 /* page */); report_probe(2, "AnonPage { slot: 8, page: 2 } (end of program)", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 3 /* page */); report_probe(2, "AnonPage { slot: 8, page: 3 } (end of program)", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 4 /* page */); report_probe(2, "AnonPage { slot: 8, page: 4 } (end of program)", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 5 /* page */); report_probe(2, "AnonPage { slot: 8, page: 5 } (end of program)", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 6 /* page */); report_probe(2, "AnonPage { slot: 8, page: 6 } (end of program)", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 7 /* page */); report_probe(2, "AnonPage { slot: 8, page: 7 } (end of program)", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 8 /* page */); report_probe(2, "AnonPage { slot: 8, page: 8 } (end of program)", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 9 /* page */); report_probe(2, "AnonPage { slot: 8, page: 9 } (end of program)", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 10 /* page */); report_probe(2, "AnonPage { slot: 8, page: 10 } (end of program)", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 11 /* page */); report_probe(2, "AnonPage { slot: 8, page: 11 } (end of program)", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 12 /* page */); report_probe(2, "AnonPage { slot: 8, page: 12 } (end of program)", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 13 /* page */); report_probe(2, "AnonPage { slot: 8, page: 13 } (end of program)", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 14 /* page */); report_probe(2, "AnonPage { slot: 8, page: 14 } (end of program)", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 15 /* page */); report_probe(2, "AnonPage { slot: 8, page: 15 } (end of program)", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 16 /* page */); report_probe(2, "AnonPage { slot: 8, page: 16 } (end of program)", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 17 /* page */); report_probe(2, "AnonPage { slot: 8, page: 17 } (end of program)", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 18 /* page */); report_probe(2, "AnonPage { slot: 8, page: 18 } (end of program)", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 19 /* page */); report_probe(2, "AnonPage { slot: 8, page: 19 } (end of program)", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 20 /* page */); report_probe(2, "AnonPage { slot: 8, page: 20 } (end of program)", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 21 /* page */); report_probe(2, "AnonPage { slot: 8, page: 21 } (end of program)", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 22 /* page */); report_probe(2, "AnonPage { slot: 8, page: 22 } (end of program)", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 23 /* page */); report_probe(2, "AnonPage { slot: 8, page: 23 } (end of program)", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 24 /* page */); report_probe(2, "AnonPage { slot: 8, page: 24 } (end of program)", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 25 /* page */); report_probe(2, "AnonPage { slot: 8, page: 25 } (end of program)", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 26 /* page */); report_probe(2, "AnonPage { slot: 8, page: 26 } (end of program)", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 27 /* page */); report_probe(2, "AnonPage { slot: 8, page: 27 } (end of program)", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 28 /* page */); report_probe(2, "AnonPage { slot: 8, page: 28 } (end of program)", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 29 /* page */); report_probe(2, "AnonPage { slot: 8, page: 29 } (end of program)", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 30 /* page */); report_probe(2, "AnonPage { slot: 8, page: 30 } (end of program)", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 31 /* page */); report_probe(2, "AnonPage { slot: 8, page: 31 } (end of program)", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 32 /* page */); report_probe(2, "AnonPage { slot: 8, page: 32 } (end of program)", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 33 /* page */); report_probe(2, "AnonPage { slot: 8, page: 33 } (end of program)", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 34 /* page */); report_probe(2, "AnonPage { slot: 8, page: 34 } (end of program)", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 35 /* page */); report_probe(2, "AnonPage { slot: 8, page: 35 } (end of program)", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 36 /* page */); report_probe(2, "AnonPage { slot: 8, page: 36 } (end of program)", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 37 /* page */); report_probe(2, "AnonPage { slot: 8, page: 37 } (end of program)", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 38 /* page */); report_probe(2, "AnonPage { slot: 8, page: 38 } (end of program)", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 39 /* page */); report_probe(2, "AnonPage { slot: 8, page: 39 } (end of program)", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 40 /* page */); report_probe(2, "AnonPage { slot: 8, page: 40 } (end of program)", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 41 /* page */); report_probe(2, "AnonPage { slot: 8, page: 41 } (end of program)", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 42 /* page */); report_probe(2, "AnonPage { slot: 8, page: 42 } (end of program)", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 43 /* page */); report_probe(2, "AnonPage { slot: 8, page: 43 } (end of program)", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 44 /* page */); report_probe(2, "AnonPage { slot: 8, page: 44 } (end of program)", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 45 /* page */); report_probe(2, "AnonPage { slot: 8, page: 45 } (end of program)", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 46 /* page */); report_probe(2, "AnonPage { slot: 8, page: 46 } (end of program)", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 47 /* page */); report_probe(2, "AnonPage { slot: 8, page: 47 } (end of program)", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 48 /* page */); report_probe(2, "AnonPage { slot: 8, page: 48 } (end of program)", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 49 /* page */); report_probe(2, "AnonPage { slot: 8, page: 49 } (end of program)", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 50 /* page */); report_probe(2, "AnonPage { slot: 8, page: 50 } (end of program)", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 51 /* page */); report_probe(2, "AnonPage { slot: 8, page: 51 } (end of program)", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 52 /* page */); report_probe(2, "AnonPage { slot: 8, page: 52 } (end of program)", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 53 /* page */); report_probe(2, "AnonPage { slot: 8, page: 53 } (end of program)", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 54 /* page */); report_probe(2, "AnonPage { slot: 8, page: 54 } (end of program)", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 55 /* page */); report_probe(2, "AnonPage { slot: 8, page: 55 } (end of program)", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 56 /* page */); report_probe(2, "AnonPage { slot: 8, page: 56 } (end of program)", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 57 /* page */); report_probe(2, "AnonPage { slot: 8, page: 57 } (end of program)", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 58 /* page */); report_probe(2, "AnonPage { slot: 8, page: 58 } (end of program)", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 59 /* page */); report_probe(2, "AnonPage { slot: 8, page: 59 } (end of program)", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 60 /* page */); report_probe(2, "AnonPage { slot: 8, page: 60 } (end of program)", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 61 /* page */); report_probe(2, "AnonPage { slot: 8, page: 61 } (end of program)", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 62 /* page */); report_probe(2, "AnonPage { slot: 8, page: 62 } (end of program)", "digest 0x1f116dc5");
    probe_anon_page(8 /* slot */, 63 /* page */); report_probe(2, "AnonPage { slot: 8, page: 63 } (end of program)", "digest 0x1f116dc5");
    { /* guest page digests, one run */
        static const uint64_t gpas[7] = { 0x69600000ULL, 0x69601000ULL, 0x69602000ULL, 0x69603000ULL, 0x69604000ULL, 0x69605000ULL, 0x69606000ULL };
        static const uint64_t samples[7] = { 0x80010001ff0000ULL, 0x80010001ff0000ULL, 0x80010001ff0000ULL, 0x80010001ff0000ULL, 0x80010001ff0000ULL, 0x80010001ff0000ULL, 0x80010001ff0000ULL }; /* sampled qword indices, 4 x u16 */
        static const char *const what[7] = { "GuestPage { gpa: 1767899136, sample: [0, 511, 256, 128] } (end of program)", "GuestPage { gpa: 1767903232, sample: [0, 511, 256, 128] } (end of program)", "GuestPage { gpa: 1767907328, sample: [0, 511, 256, 128] } (end of program)", "GuestPage { gpa: 1767911424, sample: [0, 511, 256, 128] } (end of program)", "GuestPage { gpa: 1767915520, sample: [0, 511, 256, 128] } (end of program)", "GuestPage { gpa: 1767919616, sample: [0, 511, 256, 128] } (end of program)", "GuestPage { gpa: 1767923712, sample: [0, 511, 256, 128] } (end of program)" };
        static const char *const expected[7] = { "digest 0x9be17165", "digest 0x9be17165", "digest 0x9be17165", "guest exit: memory-fault(gpa=0x69603000 size=0x1000 flags=0x8)", "guest exit: memory-fault(gpa=0x69604000 size=0x1000 flags=0x8)", "guest exit: memory-fault(gpa=0x69605000 size=0x1000 flags=0x8)", "guest exit: memory-fault(gpa=0x69606000 size=0x1000 flags=0x8)" };
        probe_guest_pages(2, 7, gpas, samples, what, expected);
    }

    printf("%s\n", failures ? "DIVERGENCE REPRODUCED: the kernel differs from the model" : "all observations match the model");
    return failures ? 1 : 0;
}
