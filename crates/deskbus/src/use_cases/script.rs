//! Use-case scripts in Rhai: add, remove or change fields before
//! serialization — the seed's "alter" signals, without forking.
//!
//! The script sees `data` (a map it may change) and the envelope as `name`,
//! `routing_key`, `id`, `source` and `origin_uuid`. Limits make a runaway
//! script an error (dead letters), never a stalled pipeline.

use deskbus_event::Event;
use rhai::{AST, Dynamic, Engine, Scope};
use serde_json::{Map, Value};

/// Operations one run may take; a loop that would spin forever stops here.
pub const MAX_OPERATIONS: u64 = 200_000;

pub struct Script {
    engine: Engine,
    ast: AST,
}

impl std::fmt::Debug for Script {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Script")
    }
}

impl Script {
    pub fn compile(source: &str) -> Result<Script, String> {
        let mut engine = Engine::new();
        // `print` and `debug` would write to stdout, which the stdout stream owns.
        engine.on_print(|_| {});
        engine.on_debug(|_, _, _| {});
        engine.set_max_operations(MAX_OPERATIONS);
        engine.set_max_call_levels(32);
        engine.set_max_expr_depths(64, 32);
        engine.set_max_string_size(1 << 20);
        engine.set_max_array_size(10_000);
        engine.set_max_map_size(10_000);
        // No file or module access: scripts only shape data.
        engine.set_max_modules(0);
        let ast = engine
            .compile(source)
            .map_err(|e| format!("script does not compile: {e}"))?;
        Ok(Script { engine, ast })
    }

    /// Runs the script on `data`. Rhai maps are sorted, so the result keeps
    /// the original column order for surviving fields and appends new ones.
    pub fn run(
        &self,
        event: &Event,
        data: Map<String, Value>,
    ) -> Result<Map<String, Value>, String> {
        let order: Vec<String> = data.keys().cloned().collect();
        let mut scope = Scope::new();
        let dynamic = rhai::serde::to_dynamic(Value::Object(data))
            .map_err(|e| format!("script input: {e}"))?;
        scope.push("data", dynamic);
        scope.push_constant("name", event.name.clone());
        scope.push_constant("routing_key", event.routing_key.clone());
        scope.push_constant("id", event.id.to_string());
        scope.push_constant("source", event.source.clone());
        scope.push_constant("origin_uuid", event.origin_uuid.clone());
        self.engine
            .run_ast_with_scope(&mut scope, &self.ast)
            .map_err(|e| format!("script failed: {e}"))?;
        let result: Dynamic = scope.get_value("data").ok_or("script removed `data`")?;
        let Value::Object(mut changed) = rhai::serde::from_dynamic::<Value>(&result)
            .map_err(|e| format!("script output: {e}"))?
        else {
            return Err("script left `data` not a map".into());
        };
        let mut out = Map::with_capacity(changed.len());
        for key in order {
            if let Some(value) = changed.shift_remove(&key) {
                out.insert(key, value);
            }
        }
        out.extend(changed);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(source: &str, data: Value) -> Result<Value, String> {
        let event = Event::new("s", "ticket.created", "o", data.clone());
        let Value::Object(map) = data else {
            unreachable!()
        };
        Script::compile(source)?.run(&event, map).map(Value::Object)
    }

    #[test]
    fn adds_removes_and_changes_fields_keeping_order() {
        let out = run(
            r#"data.priority = "high"; data.remove("secret"); data.subject = `[${name}] ${data.subject}`;"#,
            json!({"z": 1, "subject": "printer", "secret": "x", "a": 2}),
        )
        .unwrap();
        assert_eq!(
            out,
            json!({"z": 1, "subject": "[ticket.created] printer", "a": 2, "priority": "high"})
        );
        let keys: Vec<&String> = out.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["z", "subject", "a", "priority"]);
    }

    #[test]
    fn errors_and_runaways_are_errors_not_hangs() {
        assert!(
            run("throw \"bad ticket\";", json!({}))
                .unwrap_err()
                .contains("bad ticket")
        );
        assert!(
            run("loop {}", json!({}))
                .unwrap_err()
                .contains("script failed")
        );
        assert!(
            run("data = 5;", json!({}))
                .unwrap_err()
                .contains("not a map")
        );
        assert!(
            Script::compile("let x = ;")
                .unwrap_err()
                .contains("does not compile")
        );
    }
}
