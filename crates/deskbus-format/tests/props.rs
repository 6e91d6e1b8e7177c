//! Property tests: NDJSON framing, RFC 4180 read-back with the `csv` crate,
//! encoder round trips.

use base64::Engine as _;
use deskbus_format::{
    Base16Encoder, Base64Encoder, CsvMode, CsvOptions, CsvSerializer, CsvWriter, Encoder,
    InvalidPolicy, JsonFlags, JsonSerializer, LineEnding, NdjsonSerializer, PhpArray, Serializer,
    Terminator, Utf8Encoder, Value, ValueRef,
};
use proptest::prelude::*;

/// Strings made of the characters that break framing and escaping.
fn nasty_string() -> impl Strategy<Value = String> {
    let pieces = prop::sample::select(vec![
        "a", "é", "\n", "\r", "\r\n", "\0", "\u{85}", "\u{2028}", "\u{2029}", "\"", "\\", "/",
        "🔥", " ", "42", "1e3", "\t", "\u{7f}", "<", "'",
    ]);
    prop_oneof![
        prop::collection::vec(pieces, 0..12).prop_map(|v| v.concat()),
        any::<String>(),
    ]
}

fn nasty_tuple() -> impl Strategy<Value = Value> {
    prop::collection::vec(("[a-z\u{85}\u{2028}]{0,3}", nasty_string()), 0..5).prop_map(|fields| {
        let mut a = PhpArray::new();
        for (k, v) in fields {
            a.insert(k, v);
        }
        Value::Array(a)
    })
}

fn terminator() -> impl Strategy<Value = Terminator> {
    prop::sample::select(vec![
        Terminator::Nul,
        Terminator::Lf,
        Terminator::Nel,
        Terminator::Ls,
        Terminator::Ps,
        Terminator::Crlf,
    ])
}

fn flags() -> impl Strategy<Value = JsonFlags> {
    prop::sample::select(vec![
        JsonFlags::NONE,
        JsonFlags::PLUGIN_DEFAULT,
        JsonFlags::UNESCAPED_UNICODE | JsonFlags::UNESCAPED_LINE_TERMINATORS,
        JsonFlags::UNESCAPED_UNICODE
            | JsonFlags::UNESCAPED_LINE_TERMINATORS
            | JsonFlags::UNESCAPED_SLASHES
            | JsonFlags::HEX_TAG
            | JsonFlags::HEX_QUOT,
        JsonFlags::PRETTY_PRINT | JsonFlags::UNESCAPED_UNICODE,
    ])
}

fn split_on<'a>(mut hay: &'a [u8], sep: &[u8]) -> Vec<&'a [u8]> {
    let mut parts = Vec::new();
    while let Some(pos) = hay.windows(sep.len()).position(|w| w == sep) {
        parts.push(&hay[..pos]);
        hay = &hay[pos + sep.len()..];
    }
    parts.push(hay);
    parts
}

proptest! {
    #[test]
    fn ndjson_splits_back_into_its_records(
        tuples in prop::collection::vec(nasty_tuple(), 1..6),
        term in terminator(),
        flags in flags(),
    ) {
        // pretty_print is refused with lf/crlf; that refusal is the framing
        // guarantee for those terminators.
        let Ok(ser) = NdjsonSerializer::new(flags, 16, term) else {
            prop_assert!(flags.contains(JsonFlags::PRETTY_PRINT));
            return Ok(());
        };
        let json = JsonSerializer::new(flags, 16).expect("valid");
        let mut stream = Vec::new();
        let mut bodies = Vec::new();
        for t in &tuples {
            let start = stream.len();
            ser.serialize_into(ValueRef::Value(t), &mut stream, &mut Vec::new()).expect("valid utf-8");
            bodies.push(stream[start..stream.len() - term.as_bytes().len()].to_vec());
            // The body is JSON and means what PHP's output means.
            let mut php = Vec::new();
            json.write(ValueRef::Value(t), &mut php, &mut Vec::new()).expect("valid utf-8");
            let ours: serde_json::Value = serde_json::from_slice(bodies.last().expect("pushed")).expect("json");
            let theirs: serde_json::Value = serde_json::from_slice(&php).expect("json");
            prop_assert_eq!(ours, theirs);
        }
        let parts = split_on(&stream, term.as_bytes());
        prop_assert_eq!(parts.len(), tuples.len() + 1);
        prop_assert!(parts[tuples.len()].is_empty());
        for (part, body) in parts.iter().zip(&bodies) {
            prop_assert_eq!(*part, body.as_slice());
        }
    }

    #[test]
    fn json_strings_round_trip_through_serde_json(s in nasty_string(), flags in flags()) {
        let json = JsonSerializer::new(flags - JsonFlags::NUMERIC_CHECK, 16).expect("valid");
        let mut out = Vec::new();
        json.write(ValueRef::Bytes(s.as_bytes()), &mut out, &mut Vec::new()).expect("valid utf-8");
        let back: String = serde_json::from_slice(&out).expect("json string");
        prop_assert_eq!(back, s);
    }

    #[test]
    fn rfc4180_reads_back_with_the_csv_crate(
        rows in prop::collection::vec(
            prop::collection::vec(prop_oneof![
                nasty_string().prop_map(String::into_bytes),
                prop::collection::vec(any::<u8>(), 0..8),
            ], 1..5),
            1..5,
        ),
        sep in prop::sample::select(vec![b',', b';', b'\t', b'|']),
        quote in prop::sample::select(vec![b'"', b'\'']),
        crlf in any::<bool>(),
    ) {
        let opts = CsvOptions {
            separator: sep,
            enclosure: quote,
            escape: None,
            mode: CsvMode::Rfc4180,
            line_ending: if crlf { LineEnding::Crlf } else { LineEnding::Lf },
            ..CsvOptions::default()
        };
        let mut w = CsvWriter::new(CsvSerializer::new(opts).expect("valid"), Vec::new());
        for row in &rows {
            let mut a = PhpArray::new();
            for f in row {
                a.push(f.clone());
            }
            w.write_tuple(&Value::Array(a)).expect("writes");
        }
        let bytes = w.into_inner().expect("flush");
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .delimiter(sep)
            .quote(quote)
            .from_reader(bytes.as_slice());
        let read: Vec<Vec<Vec<u8>>> = reader
            .byte_records()
            .map(|r| r.expect("csv parses").iter().map(<[u8]>::to_vec).collect())
            .collect();
        prop_assert_eq!(read, rows);
    }

    #[test]
    fn base16_round_trips(bytes in prop::collection::vec(any::<u8>(), 0..64), upper in any::<bool>()) {
        let mut out = Vec::new();
        Base16Encoder::new(upper).encode_into(&bytes, &mut out, &mut Vec::new()).expect("infallible");
        prop_assert_eq!(out.len(), bytes.len() * 2);
        let back: Vec<u8> = out
            .chunks(2)
            .map(|p| u8::from_str_radix(std::str::from_utf8(p).expect("ascii"), 16).expect("hex"))
            .collect();
        prop_assert_eq!(back, bytes);
    }

    #[test]
    fn base64_round_trips(bytes in prop::collection::vec(any::<u8>(), 0..64), url in any::<bool>(), no_pad in any::<bool>()) {
        use base64::engine::general_purpose as gp;
        let mut out = Vec::new();
        Base64Encoder::new(url, no_pad).encode_into(&bytes, &mut out, &mut Vec::new()).expect("infallible");
        let engine = match (url, no_pad) {
            (false, false) => &gp::STANDARD,
            (false, true) => &gp::STANDARD_NO_PAD,
            (true, false) => &gp::URL_SAFE,
            (true, true) => &gp::URL_SAFE_NO_PAD,
        };
        prop_assert_eq!(engine.decode(&out).expect("decodes"), bytes);
    }

    #[test]
    fn utf8_from_utf8_is_lossy_decoding_with_question_marks(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        prop_assume!(!String::from_utf8_lossy(&bytes).contains('\u{FFFD}') || std::str::from_utf8(&bytes).is_err());
        prop_assume!(!bytes.windows(3).any(|w| w == "\u{FFFD}".as_bytes()));
        let mut out = Vec::new();
        Utf8Encoder::plugin_default().encode_into(&bytes, &mut out, &mut Vec::new()).expect("replace mode");
        let want = String::from_utf8_lossy(&bytes).replace('\u{FFFD}', "?");
        prop_assert_eq!(out, want.into_bytes());
    }

    #[test]
    fn charsets_round_trip(s in any::<String>(), bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        let conv = |label: &str, input: &[u8]| {
            let mut out = Vec::new();
            Utf8Encoder::new(label, InvalidPolicy::Error)
                .expect("label")
                .encode_into(input, &mut out, &mut Vec::new())
                .map(|()| String::from_utf8(out).expect("utf-8 output"))
        };
        // Latin-1: every byte is one code point.
        let l1 = conv("ISO-8859-1", &bytes).expect("latin-1 accepts everything");
        prop_assert_eq!(l1.chars().map(|c| c as u32 as u8).collect::<Vec<_>>(), bytes.clone());
        // Windows-1252 (WHATWG): every byte decodes and encodes back.
        let w = conv("windows-1252", &bytes).expect("windows-1252 accepts everything");
        let (back, _, unmappable) = encoding_rs::WINDOWS_1252.encode(&w);
        prop_assert!(!unmappable);
        prop_assert_eq!(back.into_owned(), bytes);
        // Shift_JIS: text that Shift_JIS can hold comes back as the WHATWG
        // decoder reads it (which is `s` itself except for the few
        // characters Shift_JIS folds, such as `¥` → `\`).
        let (sj, _, unmappable) = encoding_rs::SHIFT_JIS.encode(&s);
        if !unmappable {
            let ours = conv("Shift_JIS", &sj).expect("valid shift_jis");
            let (whatwg, had_errors) = encoding_rs::SHIFT_JIS.decode_without_bom_handling(&sj);
            prop_assert!(!had_errors);
            prop_assert_eq!(&ours, &whatwg);
            if !s.contains(['¥', '‾']) {
                prop_assert_eq!(ours, s);
            }
        }
    }
}
