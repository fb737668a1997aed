//! A concurrent group in a selftest, as the C reproducer runs it ([`crate::repro::c`]) and
//! as the KVM backend does: each member on a thread of its own, released together by a
//! barrier, each guest member on a vCPU of its own; a member the model skips is not sent.
//!
//! Which results a race allows is a set the model finds by searching the members' orders,
//! so a group asserts nothing: the test prints what each member did last, and what it
//! reproduces is what the kernel reports (a KASAN report, a lockdep splat, a crash), or what
//! the ops after it assert where every order ends in one state (`super::check_after_groups`
//! refuses them after any other group).

use std::collections::BTreeSet;
use std::fmt::Write as _;

use gmemfuzz_backends::op::{AccessKind, Op, PAGE_SIZE};
use gmemfuzz_backends::{Group, Outcome};

use super::{c_type, comment, errno_call, gpa, File};
use crate::repro::c::c_string;
use crate::repro::text::op_line;

/// What a group adds to the test: its member functions (file scope), the statements that
/// run it (in the test's body), and the pages its guest members touch.
pub(super) struct Emitted {
    pub functions: String,
    pub body: String,
    pub pages: BTreeSet<u64>,
}

/// Group op #`index`, whose members the model gave `outcomes` (one list per member, the
/// first entry `Skipped` where the member is not sent). `vcpus` numbers the vCPUs made so
/// far (vCPU 0 is the test's own), and goes up by the guest members.
pub(super) fn emit(index: usize, group: &Group, outcomes: &[Vec<Outcome>], files: &[File], vcpus: &mut u32) -> Result<Emitted, String> {
    let mut out = Emitted { functions: String::new(), body: String::new(), pages: BTreeSet::new() };
    let mut rows = Vec::new();
    let mut setup = String::new();
    for (j, (m, results)) in group.members.iter().zip(outcomes).enumerate() {
        let line = op_line(&m.op);
        if let Some(Outcome::Skipped(reason)) = results.first() {
            let _ = writeln!(out.body, "\t/* member {j} ({line}) not sent: every backend skips it ({reason:?}) */");
            continue;
        }
        if results.iter().any(|o| matches!(o, Outcome::Sigbus)) {
            return Err(format!("op #{index} member {j} ({line}) may take SIGBUS on its thread: a selftest does not make that"));
        }
        let name = format!("group{index}_member{j}");
        let _ = writeln!(out.functions, "{}", comment(&format!("op #{index}, member {j}: {line}"), 0));
        let row = match &m.op {
            Op::Guest { accesses } => {
                let _ = writeln!(out.functions, "static void {name}(void)\n{{");
                for a in accesses {
                    let width = a.width.bytes();
                    out.pages.extend(a.gpa / PAGE_SIZE..=(a.gpa + width - 1) / PAGE_SIZE);
                    let at = format!("*({} *){}", c_type(width), gpa(a.gpa));
                    let _ = match a.kind {
                        AccessKind::Read => writeln!(out.functions, "\t(void)READ_ONCE({at});"),
                        AccessKind::Write(v) => writeln!(out.functions, "\tWRITE_ONCE({at}, {:#x});", a.width.truncate(v)),
                    };
                }
                let _ = writeln!(out.functions, "\tGUEST_SYNC({index});\n}}\n");
                *vcpus += 1;
                let _ = writeln!(setup, "\tm[{}].vcpu = vm_vcpu_add(vm, {}, {name});", rows.len(), *vcpus);
                let _ = writeln!(setup, "\tvcpu_regs_get(m[{0}].vcpu, &m[{0}].regs);", rows.len());
                row(&format!(".guest = true, .repeat = {},", m.repeat), &c_string(&line))
            }
            op => {
                let call = match op {
                    Op::HostRead { gmem, offset, width } => {
                        format!("(void)READ_ONCE(*({} *)(g{}_mem + {offset:#x}));\n\treturn 0", c_type(width.bytes()), gmem.0)
                    }
                    Op::HostWrite { gmem, offset, width, value } => format!(
                        "WRITE_ONCE(*({} *)(g{}_mem + {offset:#x}), {:#x});\n\treturn 0",
                        c_type(width.bytes()),
                        gmem.0,
                        width.truncate(*value)
                    ),
                    op => {
                        let call = errno_call(op, files)
                            .ok_or_else(|| format!("op #{index} member {j} is `{}`: not made in a group", op.kind().name()))?;
                        format!("return {call} ? -errno : 0")
                    }
                };
                let _ = writeln!(out.functions, "static int {name}(void)\n{{\n\t{call};\n}}\n");
                row(&format!(".fn = {name}, .repeat = {},", m.repeat), &c_string(&line))
            }
        };
        rows.push(row);
    }
    let n = rows.len();
    let _ = writeln!(out.body, "\t{{\n\t\tstruct member m[] = {{");
    for row in &rows {
        let _ = writeln!(out.body, "\t\t\t{row},");
    }
    let _ = writeln!(out.body, "\t\t}};\n");
    out.body.push_str(&setup.replace("\n\t", "\n\t\t").replacen('\t', "\t\t", 1));
    let _ = writeln!(out.body, "\t\trun_group(m, {n});\n\t}}");
    Ok(out)
}

/// A member's initializer, at three tabs: on one line where it fits in 100 columns.
fn row(fields: &str, op: &str) -> String {
    let one = format!("{{ {fields} .op = {op} }}");
    // Three tabs, the row and its comma.
    if 24 + one.len() < 100 {
        one
    } else {
        format!("{{ {fields}\n\t\t\t  .op = {op} }}")
    }
}

/// The C that runs a group's members.
pub(super) const RUN_GROUP: &str = r#"
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
"#;
