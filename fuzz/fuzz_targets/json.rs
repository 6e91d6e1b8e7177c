#![no_main]
//! Any tuple, any flags, any depth: json_encode must never panic, must
//! leave the buffer untouched on error, and must emit valid JSON on success
//! (unless partial output substitutes INF with `0`, still valid).

use deskbus_format::{JsonFlags, JsonSerializer, Serializer, ValueRef};
use libfuzzer_sys::arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;

mod common;

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(bits) = u.arbitrary::<u32>() else {
        return;
    };
    let Ok(depth) = u.int_in_range(0u32..=5) else {
        return;
    };
    let Ok(tuple) = common::tuple(&mut u) else {
        return;
    };
    let flags = JsonFlags::from_bits_truncate(bits);
    let Ok(s) = JsonSerializer::new(flags, depth) else {
        assert_eq!(depth, 0);
        return;
    };
    let mut out = b"prefix".to_vec();
    match s.serialize_into(ValueRef::Value(&tuple), &mut out, &mut Vec::new()) {
        Ok(()) => {
            serde_json::from_slice::<serde_json::Value>(&out[6..])
                .expect("json_encode output must be valid json");
        }
        Err(_) => assert_eq!(out, b"prefix"),
    }
});
