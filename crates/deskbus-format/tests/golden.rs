//! Runs every case of `shared/reference/golden/php-formats.json` (PHP 8.2
//! reference bytes) through deskbus's format stack, built from specs through
//! the registry as the app does.

use std::collections::BTreeMap;

use base64::Engine as _;
use deskbus_format::{
    FormatError, FormatRegistry, FormatSpec, Key, PhpArray, RecordContext, Value, ValueRef, Warning,
};
use serde_json::{Value as J, json};

const GOLDEN: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/reference/golden/php-formats.json"
);

/// NDJSON cases where PHP writes the terminator raw inside the record and
/// deskbus escapes it on purpose (a record must never contain its own
/// terminator). For these the expected bytes are PHP's with only that
/// character escaped.
const ESCAPED_ON_PURPOSE: &[&str] = &[
    "ndjson/plugin_default/NEL/line_terminators",
    "ndjson/unescaped_line_terminators_unicode/NEL/line_terminators",
    "ndjson/unescaped_line_terminators_unicode/LS/line_terminators",
    "ndjson/unescaped_line_terminators_unicode/PS/line_terminators",
];

fn b64(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .unwrap_or_else(|e| panic!("golden base64 `{s}`: {e}"))
}

fn value(j: &J) -> Value {
    match j["type"].as_str().expect("value type") {
        "null" => Value::Null,
        "bool" => Value::Bool(j["value"].as_bool().expect("bool")),
        "int" => Value::Int(j["value"].as_i64().expect("int")),
        "float" => Value::Float(match j["value"].as_str().expect("float text") {
            "INF" => f64::INFINITY,
            "-INF" => f64::NEG_INFINITY,
            "NAN" => f64::NAN,
            t => t.parse().expect("float"),
        }),
        "string" => Value::String(b64(j["base64"].as_str().expect("base64"))),
        "array" => {
            let mut a = PhpArray::new();
            for e in j["entries"].as_array().expect("entries") {
                let k = match &e["key"] {
                    J::Number(n) => Key::Int(n.as_i64().expect("int key")),
                    J::String(s) => Key::from(s.as_str()),
                    other => panic!("bad key {other}"),
                };
                a.insert(k, value(&e["value"]));
            }
            assert_eq!(
                a.is_list(),
                j["list"].as_bool().expect("list"),
                "list flag of {j}"
            );
            Value::Array(a)
        }
        t => panic!("unknown value type {t}"),
    }
}

fn flag_names(opts: &J) -> J {
    J::Array(
        opts["flags"]
            .as_array()
            .expect("flags")
            .iter()
            .map(|f| {
                let f = f.as_str().expect("flag name");
                json!(f.trim_start_matches("JSON_").to_ascii_lowercase())
            })
            .collect(),
    )
}

fn json_spec(opts: &J) -> FormatSpec {
    FormatSpec::new("json")
        .with("flags", flag_names(opts))
        .with("depth", opts["depth"].clone())
}

/// The serializer names used by `kinesis_record` cases.
fn named_serializer(name: &str) -> FormatSpec {
    match name {
        "csv_default" => FormatSpec::new("csv"),
        "json_default" => FormatSpec::new("json")
            .with("flags", json!([]))
            .with("depth", 512),
        "json_plugin_default" => FormatSpec::new("json"),
        "ndjson_lf_plugin_default" => FormatSpec::new("ndjson").with("terminator", "lf"),
        other => panic!("unknown golden serializer {other}"),
    }
}

fn named_encoder(name: &str) -> FormatSpec {
    match name {
        "base64" => FormatSpec::new("base64"),
        "hex" => FormatSpec::new("base16"),
        other => {
            let charset = other
                .strip_prefix("utf8_from_")
                .unwrap_or_else(|| panic!("unknown golden encoder {other}"));
            FormatSpec::new("utf8").with("source_charset", charset)
        }
    }
}

fn terminator(name: &str) -> &'static str {
    match name {
        "NUL" => "nul",
        "LF" => "lf",
        "NEL" => "nel",
        "LS" => "ls",
        "PS" => "ps",
        "CRLF" => "crlf",
        other => panic!("unknown terminator {other}"),
    }
}

/// PHP's bytes with each occurrence of the terminator inside the record
/// replaced by its JSON escape.
fn escape_terminator(php: &[u8], term: &[u8]) -> Vec<u8> {
    let body = &php[..php.len() - term.len()];
    let escape: &[u8] = match term {
        [0xC2, 0x85] => b"\\u0085",
        [0xE2, 0x80, 0xA8] => b"\\u2028",
        [0xE2, 0x80, 0xA9] => b"\\u2029",
        other => panic!("no escape for terminator {other:?}"),
    };
    let mut out = Vec::new();
    let mut i = 0;
    while i < body.len() {
        if body[i..].starts_with(term) {
            out.extend_from_slice(escape);
            i += term.len();
        } else {
            out.push(body[i]);
            i += 1;
        }
    }
    out.extend_from_slice(term);
    out
}

/// Checks a serializer result against the case's output and json error.
fn check_json_outcome(
    id: &str,
    case: &J,
    got: Result<(Vec<u8>, Vec<Warning>), FormatError>,
    expected: Option<Vec<u8>>,
) -> Result<(), String> {
    let want_code = case["json_last_error"]["code"].as_u64();
    match (got, expected) {
        (Ok((bytes, warnings)), Some(want)) => {
            if bytes != want {
                return Err(format!(
                    "{id}: bytes differ\n  php:     {:?}\n  deskbus: {:?}",
                    String::from_utf8_lossy(&want),
                    String::from_utf8_lossy(&bytes)
                ));
            }
            let partial: Vec<u64> = warnings
                .iter()
                .filter_map(|w| match w {
                    Warning::JsonPartialOutput(k) => Some(u64::from(k.code())),
                    _ => None,
                })
                .collect();
            let want_partial: Vec<u64> = want_code.into_iter().collect();
            if partial != want_partial {
                return Err(format!(
                    "{id}: json error {partial:?}, php reports {want_partial:?}"
                ));
            }
            Ok(())
        }
        (Err(FormatError::Json(kind)), None) if Some(u64::from(kind.code())) == want_code => Ok(()),
        (got, want) => Err(format!(
            "{id}: got {:?}, php gives {:?} with error {want_code:?}",
            got.map(|(b, _)| String::from_utf8_lossy(&b).into_owned()),
            want.map(|b| String::from_utf8_lossy(&b).into_owned())
        )),
    }
}

#[test]
fn every_golden_case() {
    let text = std::fs::read_to_string(GOLDEN).unwrap_or_else(|e| {
        panic!(
            "cannot read the golden vectors at {GOLDEN}: {e}\n\
             (the shared/ folder must sit next to the repository root)"
        )
    });
    let golden: J = serde_json::from_str(&text).expect("golden file is json");
    let inputs: BTreeMap<String, Value> = golden["inputs"]
        .as_object()
        .expect("inputs")
        .iter()
        .map(|(k, v)| (k.clone(), value(v)))
        .collect();
    let registry = FormatRegistry::with_builtins();
    let ctx = RecordContext::default();

    let mut passed: BTreeMap<String, usize> = BTreeMap::new();
    let mut escaped = Vec::new();
    let mut failures = Vec::new();
    let cases = golden["cases"].as_array().expect("cases");
    for case in cases {
        let id = case["id"].as_str().expect("id");
        let kind = case["kind"].as_str().expect("kind");
        let opts = &case["options"];
        let input = match case.get("input_ref").and_then(J::as_str) {
            Some(r) => inputs
                .get(r)
                .cloned()
                .unwrap_or_else(|| panic!("{id}: no input {r}")),
            None => value(&case["input"]),
        };
        let expected = case["output_base64"].as_str().map(b64);
        let serialize = |spec: &FormatSpec| -> Result<(Vec<u8>, Vec<Warning>), FormatError> {
            let s = registry.build_serializer(spec)?;
            let mut out = Vec::new();
            let mut w = Vec::new();
            s.serialize_into(ValueRef::Value(&input), &mut out, &mut w)?;
            Ok((out, w))
        };
        let result: Result<(), String> = match kind {
            "json" => check_json_outcome(id, case, serialize(&json_spec(opts)), expected),
            "ndjson" => {
                let term = terminator(opts["terminator"].as_str().expect("terminator"));
                let spec = json_spec(opts).with("terminator", term);
                let spec = FormatSpec {
                    kind: "ndjson".into(),
                    ..spec
                };
                let inside = case["terminator_inside_payload"].as_bool().unwrap_or(false);
                let on_purpose = ESCAPED_ON_PURPOSE.contains(&id);
                if inside != on_purpose {
                    Err(format!(
                        "{id}: terminator_inside_payload={inside} but listed={on_purpose}"
                    ))
                } else if on_purpose {
                    escaped.push(id.to_owned());
                    let term_bytes = b64(opts["terminator_base64"].as_str().expect("terminator"));
                    let want = expected
                        .as_deref()
                        .map(|php| escape_terminator(php, &term_bytes));
                    check_json_outcome(id, case, serialize(&spec), want)
                } else {
                    check_json_outcome(id, case, serialize(&spec), expected)
                }
            }
            "csv" => {
                assert_eq!(
                    opts["eol"], "\n",
                    "{id}: deskbus writes the plugin's eol only"
                );
                let spec = FormatSpec::new("csv")
                    .with("separator", opts["separator"].clone())
                    .with("enclosure", opts["enclosure"].clone())
                    .with("escape", opts["escape"].clone());
                let want_warnings = case["php_warnings"].as_array().map_or(0, Vec::len);
                match serialize(&spec) {
                    Ok((bytes, w)) if Some(&bytes) == expected.as_ref() => {
                        let got = w.iter().filter(|w| **w == Warning::ArrayToString).count();
                        if got == want_warnings {
                            Ok(())
                        } else {
                            Err(format!(
                                "{id}: {got} array warnings, php gives {want_warnings}"
                            ))
                        }
                    }
                    other => Err(format!(
                        "{id}: got {:?}, php gives {:?}",
                        other.map(|(b, _)| String::from_utf8_lossy(&b).into_owned()),
                        expected.map(|b| String::from_utf8_lossy(&b).into_owned())
                    )),
                }
            }
            "encoder" => {
                let Value::String(bytes) = &input else {
                    panic!("{id}: encoder input must be a string");
                };
                let spec = named_encoder(opts["encoder"].as_str().expect("encoder"));
                let mut out = Vec::new();
                let r = registry
                    .build_encoder(&spec)
                    .and_then(|e| e.encode_into(bytes, &mut out, &mut Vec::new()));
                match r {
                    Ok(()) if Some(&out) == expected.as_ref() => Ok(()),
                    other => Err(format!(
                        "{id}: got {other:?} {out:?}, php gives {expected:?}"
                    )),
                }
            }
            "kinesis_record" => {
                let data = named_serializer(opts["tuple_serializer"].as_str().expect("ser"));
                let encoder = named_encoder(opts["encoder"].as_str().expect("encoder"));
                let record_ser = named_serializer(opts["record_serializer"].as_str().expect("ser"));
                let record = FormatSpec::new("kinesis")
                    .with("stream_name", opts["stream_name"].clone())
                    .with("encoder", serde_json::to_value(&encoder).expect("spec"))
                    .with(
                        "serializer",
                        serde_json::to_value(&record_ser).expect("spec"),
                    );
                let pk = opts["partition_key"].as_str().expect("partition key");
                // The plugin's constant is the default; anything else would
                // come from the app.
                let ctx = RecordContext {
                    partition_key: (pk != deskbus_format::PLUGIN_PARTITION_KEY).then_some(pk),
                    ..ctx
                };
                // The intermediate steps, then the whole stack.
                let inter = &case["intermediate"];
                let ser = serialize(&data).map(|(b, _)| b);
                let enc = ser.as_ref().ok().map(|s| {
                    let mut out = Vec::new();
                    registry
                        .build_encoder(&encoder)
                        .and_then(|e| e.encode_into(s, &mut out, &mut Vec::new()))
                        .map(|()| out)
                });
                let stack = registry.build_stack(&data, &record);
                let got = stack.and_then(|s| s.encode(&input, &ctx));
                if ser.as_ref().ok() != Some(&b64(inter["serialized_base64"].as_str().expect("i")))
                {
                    Err(format!("{id}: serialized tuple differs: {ser:?}"))
                } else if enc.and_then(Result::ok)
                    != Some(b64(inter["data_base64"].as_str().expect("i")))
                {
                    Err(format!("{id}: encoded data differs"))
                } else {
                    match got {
                        Ok(bytes) if Some(&bytes) == expected.as_ref() => Ok(()),
                        other => Err(format!(
                            "{id}: got {:?}, php gives {:?}",
                            other.map(|b| String::from_utf8_lossy(&b).into_owned()),
                            expected.map(|b| String::from_utf8_lossy(&b).into_owned())
                        )),
                    }
                }
            }
            other => Err(format!("{id}: unknown kind {other}")),
        };
        match result {
            Ok(()) => *passed.entry(kind.to_owned()).or_default() += 1,
            Err(e) => failures.push(e),
        }
    }
    let total: usize = passed.values().sum();
    println!(
        "golden: {total}/{} passed ({} of them escaped on purpose: {escaped:?}); by kind: {passed:?}",
        cases.len(),
        escaped.len()
    );
    assert_eq!(
        escaped.len(),
        ESCAPED_ON_PURPOSE.len(),
        "every listed id must exist"
    );
    assert!(
        failures.is_empty(),
        "{} golden case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
