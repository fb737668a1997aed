//! The guest side: a small command interpreter in 32-bit flat protected mode, assembled
//! with iced-x86, that performs the loads, stores and page digests the host posts to a
//! mailbox, all in one KVM_RUN.
//!
//! The mailbox layout, the command codes and the digest's constants are in `abi`
//! (`abi::mailbox`, `abi::command`, `abi::fnv`), shared with the C reproducer.
//!
//! 8-byte accesses are made as two 4-byte accesses (low half first): 32-bit mode has no
//! general-purpose 8-byte load, and the halves never cross a page.

use iced_x86::code_asm::*;

use crate::abi::command::{DIGEST, READ, W1, W2, W4, W8, WRITE};
use crate::abi::mailbox::{ABORT_FLAG, CMD_CODE, CMD_GPA, CMD_HEADER, CMD_SIZE, CMD_VALUE, COUNT, CURRENT, START};
use crate::abi::{fnv, layout};
use crate::op::Width;

pub use crate::abi::mailbox::{MAX_COMMANDS, STACK_TOP};

// The interpreter finds command i at CMD_HEADER + (i << 4).
const _: () = assert!(CMD_SIZE == 1 << 4);
/// A command's value field, and its upper half, relative to the command.
const VALUE: u32 = CMD_VALUE as u32;
const VALUE_HI: u32 = VALUE + 4;

/// The command code for a load or store of `width`.
pub fn access_code(width: Width, write: bool) -> u32 {
    let w = match width {
        Width::W1 => W1,
        Width::W2 => W2,
        Width::W4 => W4,
        Width::W8 => W8,
    };
    w | if write { WRITE } else { READ }
}

/// Assembles the interpreter to run at `layout::CODE_GPA`.
pub fn assemble() -> Result<Vec<u8>, IcedError> {
    // EBP holds this vCPU's mailbox (see `kvm::vcpu`); EBX its first command.
    let mb = ebp;
    let mut a = CodeAssembler::new(32)?;
    let mut top = a.create_label();
    let mut done = a.create_label();
    let mut next = a.create_label();
    let mut labels = Vec::new();

    a.lea(ebx, dword_ptr(mb + CMD_HEADER as u32))?;
    a.mov(ecx, dword_ptr(mb + START as u32))?;
    a.set_label(&mut top)?;
    a.cmp(ecx, dword_ptr(mb + COUNT as u32))?;
    a.jae(done)?;
    a.mov(dword_ptr(mb + CURRENT as u32), ecx)?;
    a.mov(esi, ecx)?;
    a.shl(esi, 4)?;
    a.add(esi, ebx)?;
    a.mov(eax, dword_ptr(esi + CMD_CODE as u32))?;
    a.mov(edi, dword_ptr(esi + CMD_GPA as u32))?;
    let codes = [READ | W1, READ | W2, READ | W4, READ | W8, WRITE | W1, WRITE | W2, WRITE | W4, WRITE | W8, DIGEST];
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
            c if c == READ | W1 => {
                a.movzx(edx, byte_ptr(edi))?;
                store_result(&mut a, edx)?;
            }
            c if c == READ | W2 => {
                a.movzx(edx, word_ptr(edi))?;
                store_result(&mut a, edx)?;
            }
            c if c == READ | W4 => {
                a.mov(edx, dword_ptr(edi))?;
                store_result(&mut a, edx)?;
            }
            c if c == READ | W8 => {
                a.mov(edx, dword_ptr(edi))?;
                a.mov(dword_ptr(esi + VALUE), edx)?;
                a.mov(edx, dword_ptr(edi + 4))?;
                a.mov(dword_ptr(esi + VALUE_HI), edx)?;
            }
            c if c == WRITE | W1 => {
                a.mov(dl, byte_ptr(esi + VALUE))?;
                a.mov(byte_ptr(edi), dl)?;
            }
            c if c == WRITE | W2 => {
                a.mov(dx, word_ptr(esi + VALUE))?;
                a.mov(word_ptr(edi), dx)?;
            }
            c if c == WRITE | W4 => {
                a.mov(edx, dword_ptr(esi + VALUE))?;
                a.mov(dword_ptr(edi), edx)?;
            }
            c if c == WRITE | W8 => {
                a.mov(edx, dword_ptr(esi + VALUE))?;
                a.mov(dword_ptr(edi), edx)?;
                a.mov(edx, dword_ptr(esi + VALUE_HI))?;
                a.mov(dword_ptr(edi + 4), edx)?;
            }
            _ => {
                // One load first: without memory behind the page it exits as MMIO once, and
                // the host raises the abort flag.
                let mut aborted = a.create_label();
                a.mov(edx, dword_ptr(edi))?;
                a.cmp(dword_ptr(mb + ABORT_FLAG as u32), 0u32)?;
                a.jne(aborted)?;
                // FNV-1a over the sampled qwords (four u16 indices in the value field); see
                // outcome::sample_digest.
                a.mov(eax, fnv::OFFSET_BASIS)?;
                for q in 0..4u32 {
                    a.movzx(edx, word_ptr(esi + VALUE + 2 * q))?;
                    a.and(edx, 511)?;
                    a.shl(edx, 3)?;
                    a.add(edx, edi)?;
                    a.xor(eax, dword_ptr(edx))?;
                    a.imul_3(eax, eax, fnv::PRIME as i32)?;
                    a.xor(eax, dword_ptr(edx + 4))?;
                    a.imul_3(eax, eax, fnv::PRIME as i32)?;
                }
                store_result(&mut a, eax)?;
                a.jmp(next)?;
                a.set_label(&mut aborted)?;
                a.mov(dword_ptr(mb + ABORT_FLAG as u32), 0u32)?;
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
    a.mov(dword_ptr(esi + VALUE), reg)?;
    a.mov(dword_ptr(esi + VALUE_HI), 0u32)?;
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
