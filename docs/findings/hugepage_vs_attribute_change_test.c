// SPDX-License-Identifier: GPL-2.0-only
/*
 * hugepage_vs_attribute_change: made by `gmemfuzz selftest` from
 * docs/findings/hugepage-vs-attribute-change.txt (VM type 1), gmemfuzz's reference model
 * against KVM op by op. Each op below cites its line in the program; each assertion is
 * what the model expects, for: kernel 7.2 (assumed) vm_type 1 guest_memfd true gmem_flags
 * 0x1 attributes_ioctl true attributes 0x8 gmem_only_slots true bound_range_errno EEXIST
 * bound_range_late false address_spaces 1 falloc_write_zeroes true max_gfn 0xfffffff
 * numa_nodes 0x1 file_policy true move_all true pre_fault ok platform_map false hwpoison
 * EINVAL.
 *
 * The program:
 *   bind slot=8 flags=0x0 fd=g0 gpa=0x69600000 size=0x200000 offset=0x0
 *   group
 *     x8 guest r1@0x69602018
 *     x2 set_attributes gpa=0x69603000 size=0x1fd000 attributes=PRIVATE
 *   end
 *   guest r1@0x69603000
 *
 * The library's memory (memslot 0) starts at GPA 0, so the program's GPAs are moved up by
 * GPA_BASE; the guest maps each page it touches at a GVA equal to its GPA. Each guest op
 * is a guest function, entered afresh; the exits the model expects are asserted on the
 * host. Page contents and residency, which gmemfuzz also compares after invalidating ops,
 * are not checked here.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <linux/falloc.h>
#include <linux/kvm.h>

#include "kvm_util.h"
#include "processor.h"
#include "test_util.h"
#include "ucall_common.h"

/* The program's GPAs, above the library's memory. */
#define GPA_BASE	BIT_ULL(32)
#define GPA(x)		(GPA_BASE + (x))

static const struct vm_shape protected_vm_shape = {
	.mode = VM_MODE_DEFAULT,
	.type = KVM_X86_SW_PROTECTED_VM,
};

/* The vCPU's registers as the library made them: each guest op starts from them. */
static struct kvm_regs first_regs;
/* The guest op being run, and what the model expects of it, for failure messages. */
static const char *cur_op, *cur_model;

static void guest_start(struct kvm_vcpu *vcpu, void *guest_fn, const char *op,
			const char *model)
{
	struct kvm_regs regs = first_regs;

	regs.rip = (unsigned long)guest_fn;
	vcpu_regs_set(vcpu, &regs);
	cur_op = op;
	cur_model = model;
}

/* What KVM_RUN did (@r, @err: its return value and errno), in words. */
static const char *kvm_did(struct kvm_vcpu *vcpu, int r, int err)
{
	static char buf[256];
	struct kvm_run *run = vcpu->run;
	struct ucall uc;

	if (r && err != EFAULT) {
		snprintf(buf, sizeof(buf), "KVM_RUN failed: errno %d (%s)", err, strerror(err));
	} else if (run->exit_reason == KVM_EXIT_MEMORY_FAULT) {
		snprintf(buf, sizeof(buf),
			 "KVM_EXIT_MEMORY_FAULT gpa=0x%llx size=0x%llx flags=0x%llx (%s)",
			 run->memory_fault.gpa, run->memory_fault.size, run->memory_fault.flags,
			 run->memory_fault.flags & KVM_MEMORY_EXIT_FLAG_PRIVATE ?
			 "private" : "shared");
	} else if (run->exit_reason == KVM_EXIT_MMIO) {
		snprintf(buf, sizeof(buf), "KVM_EXIT_MMIO %s gpa=0x%llx len=%u",
			 run->mmio.is_write ? "write" : "read", run->mmio.phys_addr, run->mmio.len);
	} else if (get_ucall(vcpu, &uc) == UCALL_ABORT) {
		REPORT_GUEST_ASSERT(uc);
	} else if (uc.cmd == UCALL_SYNC) {
		snprintf(buf, sizeof(buf), "the guest finished the op (GUEST_SYNC(%lu))",
			 uc.args[1]);
	} else {
		snprintf(buf, sizeof(buf), "exit reason %u (%s)", run->exit_reason,
			 exit_reason_str(run->exit_reason));
	}
	return buf;
}

/* The model expects KVM_RUN to fail with EFAULT and KVM_EXIT_MEMORY_FAULT. */
static void expect_memory_fault(struct kvm_vcpu *vcpu, gpa_t gpa, u64 size, u64 flags)
{
	struct kvm_run *run = vcpu->run;
	int r = __vcpu_run(vcpu), err = errno;

	TEST_ASSERT(r == -1 && err == EFAULT && run->exit_reason == KVM_EXIT_MEMORY_FAULT &&
		    run->memory_fault.gpa == gpa && run->memory_fault.size == size &&
		    run->memory_fault.flags == flags,
		    "%s: the model expects %s (KVM_EXIT_MEMORY_FAULT gpa=0x%lx size=0x%lx flags=0x%lx), KVM: %s",
		    cur_op, cur_model, gpa, size, flags, kvm_did(vcpu, r, err));
}

/*
 * Anonymous memory for a memslot's shared side (userspace_addr), 2 MiB aligned as the
 * program's GPAs are placed and asking for transparent huge pages (a kernel whose THP is in
 * madvise mode, or without THP, ignores or refuses the advice), so that KVM may map the slot
 * with huge pages.
 */
static void *anon_mem(size_t len)
{
	size_t huge = 2ul << 20;
	char *mem = mmap(NULL, len + huge, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	TEST_ASSERT(mem != MAP_FAILED, "mmap() of %zu bytes failed", len);
	mem = (char *)(((unsigned long)mem + huge - 1) & ~(huge - 1));
	madvise(mem, len, MADV_HUGEPAGE);
	return mem;
}

/*
 * A member of a concurrent group: a host op (@fn: 0 or -errno) or a guest op (@vcpu, started
 * from @regs each time), done @repeat times on a thread of its own. The outcomes a race
 * allows are a set, so nothing is asserted: @last is printed, and the kernel's report (KASAN,
 * lockdep) is what a race reproduces.
 */
struct member {
	int (*fn)(void);
	bool guest;
	int repeat;
	const char *op;
	struct kvm_vcpu *vcpu;
	struct kvm_regs regs;
	int last;
};

static pthread_barrier_t group_barrier;

/* One run of a guest member: its MMIO exits are answered (loads read 0) until it stops. */
static int run_guest_member(struct member *m)
{
	struct kvm_run *run = m->vcpu->run;
	int r;

	vcpu_regs_set(m->vcpu, &m->regs);
	do {
		memset(run->mmio.data, 0, sizeof(run->mmio.data));
		r = __vcpu_run(m->vcpu);
	} while (!r && run->exit_reason == KVM_EXIT_MMIO);
	return r ? -errno : run->exit_reason;
}

static void *member_thread(void *arg)
{
	struct member *m = arg;
	int i;

	pthread_barrier_wait(&group_barrier);
	for (i = 0; i < m->repeat; i++)
		m->last = m->guest ? run_guest_member(m) : m->fn();
	return NULL;
}

/* The test's run: a race is tried ITERATIONS times, each from a fresh VM. */
#define ITERATIONS	100
static int iteration;

/* Runs @n members at once, released together; the first time, prints what each did last. */
static void run_group(struct member *m, int n)
{
	pthread_t threads[n];
	int i;

	pthread_barrier_init(&group_barrier, NULL, n);
	for (i = 0; i < n; i++)
		pthread_create(&threads[i], NULL, member_thread, &m[i]);
	for (i = 0; i < n; i++)
		pthread_join(threads[i], NULL);
	pthread_barrier_destroy(&group_barrier);
	for (i = 0; i < n && !iteration; i++)
		pr_info("%s: %s %d\n", m[i].op,
			m[i].guest ? "last exit reason (or -errno)" : "last result", m[i].last);
}

static struct kvm_vm *vm;

/* op #2: guest r1@0x69603000 */
static void guest_op2(void)
{
	(void)READ_ONCE(*(u8 *)GPA(0x69603000));	/* the model: KVM_EXIT_MEMORY_FAULT */
	GUEST_SYNC(2);
}

/* op #1, member 0: guest r1@0x69602018 */
static void group1_member0(void)
{
	(void)READ_ONCE(*(u8 *)GPA(0x69602018));
	GUEST_SYNC(1);
}

/* op #1, member 1: set_attributes gpa=0x69603000 size=0x1fd000 attributes=PRIVATE */
static int group1_member1(void)
{
	return __vm_ioctl(vm, KVM_SET_MEMORY_ATTRIBUTES,
		       &((struct kvm_memory_attributes){
				.address = GPA(0x69603000),
				.size = 0x1fd000,
				.attributes = KVM_MEMORY_ATTRIBUTE_PRIVATE,
		       })) ? -errno : 0;
}

static void test_hugepage_vs_attribute_change(void)
{
	struct kvm_vcpu *vcpu;

	vm = vm_create_shape_with_one_vcpu(protected_vm_shape, &vcpu, NULL);
	vcpu_regs_get(vcpu, &first_regs);

	/* The pages the guest touches, at GVA == GPA (no memory needed behind them). */
	virt_map(vm, GPA(0x69602000), GPA(0x69602000), 2);

	/* op #0: bind slot=8 flags=0x0 fd=g0 gpa=0x69600000 size=0x200000 offset=0x0 */
	vm_set_user_memory_region2(vm, 8, 0x0, GPA(0x69600000), 0x200000, anon_mem(0x200000), -1,
				   0x0);

	/*
	 * op #1: a group of guest r1@0x69602018 | set_attributes gpa=0x69603000 size=0x1fd000
	 * attributes=PRIVATE
	 */
	{
		struct member m[] = {
			{ .guest = true, .repeat = 8, .op = "guest r1@0x69602018" },
			{ .fn = group1_member1, .repeat = 2,
			  .op = "set_attributes gpa=0x69603000 size=0x1fd000 attributes=PRIVATE" },
		};

		m[0].vcpu = vm_vcpu_add(vm, 1, group1_member0);
		vcpu_regs_get(m[0].vcpu, &m[0].regs);
		run_group(m, 2);
	}

	/* op #2: guest r1@0x69603000 */
	guest_start(vcpu, guest_op2, "op #2: guest r1@0x69603000",
		    "[memory-fault(gpa=0x69603000 size=0x1000 flags=0x8)]");
	expect_memory_fault(vcpu, GPA(0x69603000), 0x1000, KVM_MEMORY_EXIT_FLAG_PRIVATE);

	kvm_vm_free(vm);
}

int main(int argc, char *argv[])
{
	TEST_REQUIRE(kvm_check_cap(KVM_CAP_VM_TYPES) & BIT(KVM_X86_SW_PROTECTED_VM));

	for (iteration = 0; iteration < ITERATIONS; iteration++)
		test_hugepage_vs_attribute_change();
	pr_info("%d iterations\n", ITERATIONS);
	return 0;
}
