//! Reading format v1, where `g<N>` named the N-th *successful* `create_gmem`. From v2 on it
//! names the N-th `create_gmem` op, failed or not, so that file names depend on the program
//! alone. A v1 program is renamed on load: which creates succeed is the model's prediction
//! for the VM type the file records (0 when it records none), which is what v1 meant.

use gmemfuzz_backends::model::Model;
use gmemfuzz_backends::op::{GmemId, Op};
use gmemfuzz_backends::{Backend, Outcome, Profile};

use crate::program::Program;

/// `program` (v1 names) with v2 names.
pub fn upgrade(program: &Program, vm_type: Option<u64>) -> Program {
    // Whether each create op succeeds: outcomes do not depend on how files are named.
    // The model alone, op by op: a create's outcome depends on the ops before it only.
    let mut model = Model::new(Profile::assumed(vm_type.unwrap_or(0)));
    let made: Vec<bool> = program
        .ops
        .iter()
        .map(|op| {
            let outcome = model.apply(op);
            matches!(op, Op::CreateGmem { .. }) && matches!(outcome, Ok(Outcome::Ok))
        })
        .collect();
    // v1 name n -> the create op ordinal of the n-th successful create.
    let creates: Vec<usize> =
        program.ops.iter().enumerate().filter(|(_, op)| matches!(op, Op::CreateGmem { .. })).map(|(i, _)| i).collect();
    let successful: Vec<u8> = creates.iter().enumerate().filter(|(_, &i)| made[i]).map(|(ordinal, _)| ordinal as u8).collect();
    let mut ops = program.ops.clone();
    for op in &mut ops {
        if let Some(gmem) = op.gmem_mut() {
            // A v1 name no create made stays a name of no file: past every create.
            *gmem = match successful.get(gmem.0 as usize) {
                Some(&ordinal) => GmemId(ordinal),
                None => GmemId((creates.len() + gmem.0 as usize).min(u8::MAX as usize) as u8),
            };
        }
    }
    Program { ops }
}
