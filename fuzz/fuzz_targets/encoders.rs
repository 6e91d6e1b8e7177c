#![no_main]
//! Every encoder on arbitrary bytes: never panics; utf8 output is always
//! valid UTF-8 in replace mode; base16/base64 decode back.

use deskbus_format::{Base16Encoder, Base64Encoder, Encoder, InvalidPolicy, Utf8Encoder};
use libfuzzer_sys::fuzz_target;

const CHARSETS: &[&str] = &[
    "UTF-8",
    "ISO-8859-1",
    "Windows-1252",
    "Shift_JIS",
    "EUC-JP",
    "GBK",
    "Big5",
    "KOI8-R",
];

fuzz_target!(|data: &[u8]| {
    let Some((&sel, input)) = data.split_first() else {
        return;
    };
    let charset = CHARSETS[usize::from(sel) % CHARSETS.len()];
    let policy = if sel & 0x80 == 0 {
        InvalidPolicy::Replace
    } else {
        InvalidPolicy::Error
    };
    let e = Utf8Encoder::new(charset, policy).expect("known label");
    let mut out = Vec::new();
    match e.encode_into(input, &mut out, &mut Vec::new()) {
        Ok(()) => assert!(
            std::str::from_utf8(&out).is_ok(),
            "utf8 encoder wrote invalid utf-8"
        ),
        Err(_) => assert!(out.is_empty() && policy == InvalidPolicy::Error),
    }
    let mut hex = Vec::new();
    Base16Encoder::new(sel & 1 == 1)
        .encode_into(input, &mut hex, &mut Vec::new())
        .expect("infallible");
    assert_eq!(hex.len(), input.len() * 2);
    let mut b64 = Vec::new();
    Base64Encoder::new(sel & 2 == 2, sel & 4 == 4)
        .encode_into(input, &mut b64, &mut Vec::new())
        .expect("infallible");
    assert!(b64.is_ascii());
});
