#![no_main]
//! Arbitrary TOML or JSON text → spec → stack → encode a fixed tuple. Bad
//! configs must be errors, never panics.

use deskbus_format::{FormatRegistry, RecordContext, StackSpec, Value};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let spec: StackSpec = match toml::from_str(text) {
        Ok(s) => s,
        Err(_) => match serde_json::from_str(text) {
            Ok(s) => s,
            Err(_) => return,
        },
    };
    let _ = deskbus_format::lint_stack(&spec.serializer, &spec.record);
    let Ok(stack) = FormatRegistry::with_builtins().build_stack(&spec.serializer, &spec.record)
    else {
        return;
    };
    let tuple: Value = serde_json::json!({
        "helpdesk_code": "BFX-1",
        "datetime_complete": "2026-11-23 14:40:14",
        "department_id": 3,
        "department_name": "Maintenance \u{85}\u{2028}",
        "helptopic_id": 11,
        "helptopic_label": "Report a Problem / Access Issue",
        "nested": {"a": [1, 2.5, null, true]},
    })
    .into();
    let ctx = RecordContext {
        stream_name: Some("s"),
        event_id: Some("id"),
        event_name: Some("ticket_created"),
        origin_uuid: Some("u"),
        time: Some("2026-11-23T14:40:14Z"),
        source: Some("/osticket"),
        event_type: Some("t"),
        partition_key: None,
    };
    let _ = stack.content_type();
    let _ = stack.encode(&tuple, &ctx);
});
