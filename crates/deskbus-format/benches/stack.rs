//! Tuples per second on one thread for the plugin's typical stacks.
//!
//! Run: `cargo bench -p deskbus-format --bench stack`.

use deskbus_format::{FormatRegistry, FormatSpec, RecordContext, Stack, Value};
use divan::counter::ItemsCount;
use divan::{Bencher, black_box};

fn main() {
    divan::main();
}

fn ticket_json() -> serde_json::Value {
    serde_json::json!({
        "helpdesk_code": "BFX-1",
        "datetime_complete": "2026-11-23 14:40:14",
        "department_id": 3,
        "department_name": "Maintenance",
        "helptopic_id": 11,
        "helptopic_label": "Report a Problem / Access Issue",
    })
}

fn stack(serializer: FormatSpec, record: FormatSpec) -> Stack {
    FormatRegistry::with_builtins()
        .build_stack(&serializer, &record)
        .expect("valid stack")
}

fn run(bencher: Bencher, stack: &Stack) {
    let tuple = Value::from(ticket_json());
    let ctx = RecordContext::default();
    let mut out = Vec::with_capacity(512);
    bencher.counter(ItemsCount::new(1usize)).bench_local(|| {
        out.clear();
        stack
            .encode_into(black_box(&tuple), &ctx, &mut out)
            .expect("encodes");
        black_box(out.len())
    });
}

/// CSV → base64 → Kinesis record → JSON (plugin flags).
#[divan::bench(sample_count = 200, sample_size = 2000)]
fn csv_base64_kinesis_json(bencher: Bencher) {
    let s = stack(
        FormatSpec::new("csv"),
        FormatSpec::new("kinesis")
            .with("stream_name", "helpdesk")
            .with("encoder", serde_json::json!({"type": "base64"})),
    );
    run(bencher, &s);
}

/// NDJSON (plugin flags, LF), raw record.
#[divan::bench(sample_count = 200, sample_size = 2000)]
fn ndjson_raw(bencher: Bencher) {
    run(
        bencher,
        &stack(FormatSpec::new("ndjson"), FormatSpec::new("raw")),
    );
}

/// Baseline: `serde_json` writing the same tuple (as a `serde_json::Value`)
/// into a reused buffer.
#[divan::bench(sample_count = 200, sample_size = 2000)]
fn serde_json_baseline(bencher: Bencher) {
    let tuple = ticket_json();
    let mut out = Vec::with_capacity(512);
    bencher.counter(ItemsCount::new(1usize)).bench_local(|| {
        out.clear();
        serde_json::to_writer(&mut out, black_box(&tuple)).expect("encodes");
        black_box(out.len())
    });
}

/// Baseline: `serde_json::to_vec` (allocates a new buffer each time).
#[divan::bench(sample_count = 200, sample_size = 2000)]
fn serde_json_to_vec(bencher: Bencher) {
    let tuple = ticket_json();
    bencher
        .counter(ItemsCount::new(1usize))
        .bench_local(|| black_box(serde_json::to_vec(black_box(&tuple)).expect("encodes")));
}
