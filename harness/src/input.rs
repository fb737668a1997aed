//! What an input means (see the module doc of [`crate::fuzz`] for why): a text program
//! when it starts with the text header, generator bytes otherwise.

use gmemfuzz_backends::Profile;

use crate::gen::OpWeights;
use crate::program::Program;
use crate::repro::text;

/// The program an input makes on a kernel with `profile`; `None` when it makes nothing
/// worth running (the fuzzer drops it).
pub fn decode(data: &[u8], profile: &Profile) -> Option<Program> {
    decode_with(data, profile, &OpWeights::for_profile(profile))
}

/// As [`decode`], with the generator drawing op kinds at `rates` (text programs do not
/// depend on them).
pub fn decode_with(data: &[u8], profile: &Profile, rates: &OpWeights) -> Option<Program> {
    if text::looks_like_text(data) {
        // A text input is the program it spells, whatever the generator does; one that
        // does not parse (a mutation broke it) is dropped, not re-read as generator bytes.
        let program = text::parse(std::str::from_utf8(data).ok()?).ok()?;
        return (!program.ops.is_empty()).then_some(program);
    }
    generated(data, profile, rates)
}

/// What the generator makes of raw bytes under `profile`, drawing op kinds at `rates`.
pub fn generated(data: &[u8], profile: &Profile, rates: &OpWeights) -> Option<Program> {
    Program::from_bytes_with(data, profile, rates.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_inputs_are_the_program_they_spell() {
        let text = b"gmemfuzz-program v2\ncreate_gmem size=0x1000 flags=0\ncheck\n";
        let p = decode(text, &Profile::host_6_18()).unwrap();
        assert_eq!(p, text::parse(std::str::from_utf8(text).unwrap()).unwrap());
        assert_eq!(decode(text, &Profile::sw_protected_6_12()), Some(p));
    }

    #[test]
    fn broken_text_is_dropped_not_reread_as_bytes() {
        assert_eq!(decode(b"gmemfuzz-program v1\ncreate_gmem size=0x1000 flags=BOGUS\n", &Profile::host_6_18()), None);
        assert_eq!(decode(b"gmemfuzz-program v1\n", &Profile::host_6_18()), None);
    }
}
