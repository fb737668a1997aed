//! The guest side: a small command interpreter in 32-bit flat protected mode, assembled
//! with iced-x86, that performs the loads, stores and page digests the host posts to a
//! mailbox, all in one KVM_RUN.
//!
//! Mailbox layout (at `layout::MAILBOX_GPA`):
//! - `+0`  u32 number of commands
//! - `+4`  u32 index of the command being executed (written by the guest before each)
//! - `+8`  u32 index to start at
//! - `+12` u32 abort flag: the host sets it during an MMIO exit of a digest, which then
//!   stops after its first load instead of taking 1024 exits
//! - `+16` commands, 16 bytes each: u32 code, u32 gpa, u64 value (in for stores, out for
//!   loads and digests)
//!
//! 8-byte accesses are made as two 4-byte accesses (low half first): 32-bit mode has no
//! general-purpose 8-byte load, and the halves never cross a page.

use iced_x86::code_asm::*;

use crate::op::layout;
use crate::op::Width;

pub const CMD_HEADER: u64 = 16;
pub const CMD_SIZE: u64 = 16;
/// Most commands one run can carry.
pub const MAX_COMMANDS: usize = ((layout::MAILBOX_SIZE - CMD_HEADER - 0x1000) / CMD_SIZE) as usize;
/// The guest stack: the top of the mailbox slot.
pub const STACK_TOP: u64 = layout::MAILBOX_GPA + layout::MAILBOX_SIZE;

const READ: u32 = 0x00;
const WRITE: u32 = 0x10;
pub const DIGEST: u32 = 0x20;
pub const ABORT_FLAG: u64 = 12;

/// The command code for a load or store of `width`.
pub fn access_code(width: Width, write: bool) -> u32 {
    let w = match width {
        Width::W1 => 1,
        Width::W2 => 2,
        Width::W4 => 3,
        Width::W8 => 4,
    };
    w | if write { WRITE } else { READ }
}

/// Assembles the interpreter to run at `layout::CODE_GPA`.
pub fn assemble() -> Result<Vec<u8>, IcedError> {
    let mb = layout::MAILBOX_GPA as u32;
    let mut a = CodeAssembler::new(32)?;
    let mut top = a.create_label();
    let mut done = a.create_label();
    let mut next = a.create_label();
    let mut labels = Vec::new();

    a.mov(ebx, mb + CMD_HEADER as u32)?;
    a.mov(ecx, dword_ptr(mb + 8))?;
    a.set_label(&mut top)?;
    a.cmp(ecx, dword_ptr(mb))?;
    a.jae(done)?;
    a.mov(dword_ptr(mb + 4), ecx)?;
    a.mov(esi, ecx)?;
    a.shl(esi, 4)?;
    a.add(esi, ebx)?;
    a.mov(eax, dword_ptr(esi))?;
    a.mov(edi, dword_ptr(esi + 4))?;
    let codes = [READ | 1, READ | 2, READ | 3, READ | 4, WRITE | 1, WRITE | 2, WRITE | 3, WRITE | 4, DIGEST];
    for code in codes {
        let label = a.create_label();
        a.cmp(eax, code)?;
        a.je(label)?;
        labels.push((code, label));
    }
    // An unknown code: stop with a marker the host recognises as a harness bug.
    a.ud2()?;
    for (code, mut label) in labels {
        a.set_label(&mut label)?;
        match code {
            c if c == READ | 1 => {
                a.movzx(edx, byte_ptr(edi))?;
                store_result(&mut a, edx)?;
            }
            c if c == READ | 2 => {
                a.movzx(edx, word_ptr(edi))?;
                store_result(&mut a, edx)?;
            }
            c if c == READ | 3 => {
                a.mov(edx, dword_ptr(edi))?;
                store_result(&mut a, edx)?;
            }
            c if c == READ | 4 => {
                a.mov(edx, dword_ptr(edi))?;
                a.mov(dword_ptr(esi + 8), edx)?;
                a.mov(edx, dword_ptr(edi + 4))?;
                a.mov(dword_ptr(esi + 12), edx)?;
            }
            c if c == WRITE | 1 => {
                a.mov(dl, byte_ptr(esi + 8))?;
                a.mov(byte_ptr(edi), dl)?;
            }
            c if c == WRITE | 2 => {
                a.mov(dx, word_ptr(esi + 8))?;
                a.mov(word_ptr(edi), dx)?;
            }
            c if c == WRITE | 3 => {
                a.mov(edx, dword_ptr(esi + 8))?;
                a.mov(dword_ptr(edi), edx)?;
            }
            c if c == WRITE | 4 => {
                a.mov(edx, dword_ptr(esi + 8))?;
                a.mov(dword_ptr(edi), edx)?;
                a.mov(edx, dword_ptr(esi + 12))?;
                a.mov(dword_ptr(edi + 4), edx)?;
            }
            _ => {
                // One load first: without memory behind the page it exits as MMIO once, and
                // the host raises the abort flag.
                let mut aborted = a.create_label();
                a.mov(edx, dword_ptr(edi))?;
                a.cmp(dword_ptr(mb + 12), 0u32)?;
                a.jne(aborted)?;
                // FNV-1a over the sampled qwords (four u16 indices in the value field); see
                // outcome::sample_digest.
                a.mov(eax, 0x811c_9dc5u32)?;
                for q in 0..4u32 {
                    a.movzx(edx, word_ptr(esi + 8 + 2 * q))?;
                    a.and(edx, 511)?;
                    a.shl(edx, 3)?;
                    a.add(edx, edi)?;
                    a.xor(eax, dword_ptr(edx))?;
                    a.imul_3(eax, eax, 0x0100_0193)?;
                    a.xor(eax, dword_ptr(edx + 4))?;
                    a.imul_3(eax, eax, 0x0100_0193)?;
                }
                store_result(&mut a, eax)?;
                a.jmp(next)?;
                a.set_label(&mut aborted)?;
                a.mov(dword_ptr(mb + 12), 0u32)?;
            }
        }
        a.jmp(next)?;
    }
    a.set_label(&mut next)?;
    a.inc(ecx)?;
    a.jmp(top)?;
    a.set_label(&mut done)?;
    a.hlt()?;
    a.assemble(layout::CODE_GPA)
}

/// Stores a 32-bit result and zeroes the upper half of the value field.
fn store_result(a: &mut CodeAssembler, reg: AsmRegister32) -> Result<(), IcedError> {
    a.mov(dword_ptr(esi + 8), reg)?;
    a.mov(dword_ptr(esi + 12), 0u32)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpreter_assembles_and_ends_in_hlt() {
        let code = assemble().expect("assembles");
        assert!(code.len() < layout::CODE_SIZE as usize, "code fits its slot: {} bytes", code.len());
        assert_eq!(*code.last().unwrap(), 0xf4, "last instruction is HLT");
    }
}
