/*
 * probe.c — gmemfuzz test-kernel lane probe, run inside the QEMU guest.
 *
 * Why: proves the lane kernel offers what the fuzzer needs and the host kernel
 * lacks: KVM_CAP_MEMORY_ATTRIBUTES (233), KVM_CAP_GUEST_MEMFD (234),
 * KVM_CAP_VM_TYPES (235) with type 1 (KVM_X86_SW_PROTECTED_VM), a guest_memfd
 * on such a VM, a KVM_MEM_GUEST_MEMFD memslot, and a PRIVATE attribute flip.
 * Output: one "GMEMFUZZ_PROBE key=value" line per fact, then
 * "GMEMFUZZ_PROBE result=PASS" (exit 0) or "result=FAIL" (exit 1).
 * Build: gcc -static -O2 -o probe probe.c (self-contained: the build host's
 * <linux/kvm.h> may be older than 6.12, so the newer ABI is declared here).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#define CAP_USER_MEMORY2 231
#define CAP_MEMORY_ATTRIBUTES 233
#define CAP_GUEST_MEMFD 234
#define CAP_VM_TYPES 235
#define CAP_PRE_FAULT_MEMORY 236
#define VM_TYPE_SW_PROTECTED 1
#define MEM_GUEST_MEMFD (1u << 2)
#define MEMORY_ATTRIBUTE_PRIVATE (1ull << 3)

struct gm_region2 {
	uint32_t slot, flags;
	uint64_t guest_phys_addr, memory_size, userspace_addr, guest_memfd_offset;
	uint32_t guest_memfd, pad1;
	uint64_t pad2[14];
};
struct gm_attrs {
	uint64_t address, size, attributes, flags;
};
struct gm_create {
	uint64_t size, flags, reserved[6];
};

#define IOC_SET_USER_MEMORY_REGION2 _IOW(KVMIO, 0x49, struct gm_region2)
#define IOC_SET_MEMORY_ATTRIBUTES _IOW(KVMIO, 0xd2, struct gm_attrs)
#define IOC_CREATE_GUEST_MEMFD _IOWR(KVMIO, 0xd4, struct gm_create)

static int failed;

static void fact(const char *key, long val, int ok)
{
	printf("GMEMFUZZ_PROBE %s=%ld%s\n", key, val, ok ? "" : " (FAIL)");
	if (!ok)
		failed = 1;
}

static void fact_errno(const char *what)
{
	printf("GMEMFUZZ_PROBE %s=error errno=%d (%s) (FAIL)\n", what, errno,
	       strerror(errno));
	failed = 1;
}

int main(void)
{
	const size_t sz = 2 << 20;
	int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (kvm < 0) {
		fact_errno("open_dev_kvm");
		goto out;
	}
	fact("api_version", ioctl(kvm, KVM_GET_API_VERSION, 0), 1);
	fact("cap_user_memory2", ioctl(kvm, KVM_CHECK_EXTENSION, CAP_USER_MEMORY2), 1);
	long attrs = ioctl(kvm, KVM_CHECK_EXTENSION, CAP_MEMORY_ATTRIBUTES);
	fact("cap_memory_attributes", attrs, (attrs & MEMORY_ATTRIBUTE_PRIVATE) != 0);
	long gmem = ioctl(kvm, KVM_CHECK_EXTENSION, CAP_GUEST_MEMFD);
	fact("cap_guest_memfd", gmem, gmem > 0);
	long types = ioctl(kvm, KVM_CHECK_EXTENSION, CAP_VM_TYPES);
	fact("cap_vm_types", types, (types & (1 << VM_TYPE_SW_PROTECTED)) != 0);
	fact("cap_pre_fault_memory",
	     ioctl(kvm, KVM_CHECK_EXTENSION, CAP_PRE_FAULT_MEMORY), 1);

	int vm = ioctl(kvm, KVM_CREATE_VM, VM_TYPE_SW_PROTECTED);
	if (vm < 0) {
		fact_errno("create_vm_type1");
		goto out;
	}
	fact("create_vm_type1", 0, 1);
	fact("vm_cap_memory_attributes",
	     ioctl(vm, KVM_CHECK_EXTENSION, CAP_MEMORY_ATTRIBUTES), 1);
	fact("vm_cap_guest_memfd", ioctl(vm, KVM_CHECK_EXTENSION, CAP_GUEST_MEMFD), 1);

	struct gm_create cg = { .size = sz, .flags = 0 };
	int gfd = ioctl(vm, IOC_CREATE_GUEST_MEMFD, &cg);
	if (gfd < 0) {
		fact_errno("create_guest_memfd");
		goto out;
	}
	fact("create_guest_memfd", 0, 1);

	void *shared = mmap(NULL, sz, PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (shared == MAP_FAILED) {
		fact_errno("mmap_shared");
		goto out;
	}
	struct gm_region2 r = {
		.slot = 0, .flags = MEM_GUEST_MEMFD, .guest_phys_addr = 0,
		.memory_size = sz, .userspace_addr = (uintptr_t)shared,
		.guest_memfd_offset = 0, .guest_memfd = (uint32_t)gfd,
	};
	if (ioctl(vm, IOC_SET_USER_MEMORY_REGION2, &r) < 0)
		fact_errno("set_memslot_guest_memfd");
	else
		fact("set_memslot_guest_memfd", 0, 1);

	struct gm_attrs a = { .address = 0, .size = sz,
			      .attributes = MEMORY_ATTRIBUTE_PRIVATE };
	if (ioctl(vm, IOC_SET_MEMORY_ATTRIBUTES, &a) < 0)
		fact_errno("set_attributes_private");
	else
		fact("set_attributes_private", 0, 1);

	if (fallocate(gfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 4096) < 0)
		fact_errno("punch_hole");
	else
		fact("punch_hole", 0, 1);

	printf("GMEMFUZZ_PROBE kcov_present=%d\n",
	       access("/sys/kernel/debug/kcov", F_OK) == 0);
	close(gfd);
	close(vm);
	close(kvm);
out:
	printf("GMEMFUZZ_PROBE result=%s\n", failed ? "FAIL" : "PASS");
	return failed;
}
