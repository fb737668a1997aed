//! The C text every selftest shares: includes and the host-side helpers, each put in only
//! where the test uses it (the selftests build with -Wall -Werror).

pub(super) const INCLUDES: &str = r#"#include <errno.h>
#include <fcntl.h>
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
@SHAPE@"#;

pub(super) const PROTECTED_SHAPE: &str = r#"
static const struct vm_shape protected_vm_shape = {
	.mode = VM_MODE_DEFAULT,
	.type = KVM_X86_SW_PROTECTED_VM,
};
"#;

pub(super) const GUEST_HELPERS: &str = r#"
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
"#;

pub(super) const EXPECT_MMIO: &str = r#"
/* The model expects the access at @gpa to exit to userspace as MMIO; loads read 0. */
static void expect_mmio(struct kvm_vcpu *vcpu, gpa_t gpa, u32 len, bool write)
{
	struct kvm_run *run = vcpu->run;
	int r = __vcpu_run(vcpu), err = errno;

	TEST_ASSERT(!r && run->exit_reason == KVM_EXIT_MMIO &&
		    run->mmio.phys_addr >= gpa && run->mmio.phys_addr < gpa + len &&
		    run->mmio.is_write == write,
		    "%s: the model expects %s (KVM_EXIT_MMIO at 0x%lx), KVM: %s",
		    cur_op, cur_model, gpa, kvm_did(vcpu, r, err));
	memset(run->mmio.data, 0, sizeof(run->mmio.data));
}
"#;

pub(super) const EXPECT_FAULT: &str = r#"
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
"#;

pub(super) const EXPECT_SYNC: &str = r#"
/* The model expects the guest's accesses to complete: the guest reaches GUEST_SYNC(@op). */
static void expect_sync(struct kvm_vcpu *vcpu, u64 op)
{
	struct ucall uc;
	int r = __vcpu_run(vcpu), err = errno;

	TEST_ASSERT(!r && get_ucall(vcpu, &uc) == UCALL_SYNC && uc.args[1] == op,
		    "%s: the model expects %s, KVM: %s", cur_op, cur_model, kvm_did(vcpu, r, err));
}
"#;

pub(super) const EXPECT_ERRNO: &str = r#"
/* The model expects the call that returned @r to succeed (@err 0) or to fail with @err. */
static void expect_errno(const char *op, const char *model, int r, int err)
{
	int e = errno;

	if (!err)
		TEST_ASSERT(r >= 0, "%s: the model expects %s, the call failed: errno %d (%s)",
			    op, model, e, strerror(e));
	else
		TEST_ASSERT(r == -1 && e == err,
			    "%s: the model expects %s, the call returned %d (errno %d)",
			    op, model, r, r == -1 ? e : 0);
}
"#;

pub(super) const ANON_MEM: &str = r#"
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
"#;
