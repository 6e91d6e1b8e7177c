#![no_main]
//! NDJSON framing: whatever the tuple and flags, a record never contains
//! its own terminator.

use deskbus_format::{JsonFlags, NdjsonSerializer, Serializer, Terminator, ValueRef};
use libfuzzer_sys::arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;

mod common;

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(bits) = u.arbitrary::<u32>() else {
        return;
    };
    let Ok(t) = u.int_in_range(0u8..=5) else {
        return;
    };
    let Ok(tuple) = common::tuple(&mut u) else {
        return;
    };
    let term = [
        Terminator::Nul,
        Terminator::Lf,
        Terminator::Nel,
        Terminator::Ls,
        Terminator::Ps,
        Terminator::Crlf,
    ][usize::from(t)];
    // Partial output can stand a `null` in for a bad string; that is fine
    // for framing too, so every flag is allowed.
    let flags = JsonFlags::from_bits_truncate(bits);
    let Ok(s) = NdjsonSerializer::new(flags, 8, term) else {
        return;
    };
    let mut out = Vec::new();
    if s.serialize_into(ValueRef::Value(&tuple), &mut out, &mut Vec::new())
        .is_ok()
    {
        let tb = term.as_bytes();
        assert!(out.ends_with(tb));
        let body = &out[..out.len() - tb.len()];
        assert!(
            !body.windows(tb.len()).any(|w| w == tb),
            "terminator inside the record"
        );
    }
});
