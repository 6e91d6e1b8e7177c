//! The config file: parsed once into a spanned TOML tree, then validated into
//! typed structs. Every error is collected and reported as
//! `file:line:column: message`; nothing downstream sees an invalid config.
//!
//! Each connector's options live in its own `config.rs`, next to its code.

mod diagnostics;
mod interpolate;
mod secret;
pub(crate) mod walker;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use deskbus_event::{RoutingPattern, Template, names};
use deskbus_spool::SyncMode;
use indexmap::IndexMap;
use toml::de::{DeTable, DeValue};

pub use diagnostics::{Diagnostic, Diagnostics, Severity};
pub use secret::Secret;
use walker::{Ctx, Located, Table};

use crate::sources::SourceConfig;
use crate::streams::StreamConfig;
use crate::use_cases::format::{UseCaseFormat, preset};
use crate::use_cases::script::Script;
use crate::use_cases::ticket::TicketMapping;

// A validated config; built only by `parse`.
#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub general: GeneralConfig,
    pub admin: AdminConfig,
    pub log: LogConfig,
    pub sources: IndexMap<String, SourceConfig>,
    pub streams: IndexMap<String, StreamSettings>,
    pub use_cases: IndexMap<String, UseCaseConfig>,
}

/// `[general]`
#[derive(Debug, Clone)]
pub struct GeneralConfig {
    /// Where deskbus keeps its state: the spool (`spool.db`) and anything else.
    /// Relative paths are relative to the working directory. Default `./deskbus-data`.
    /// A spool written by an older deskbus is upgraded in place when opened,
    /// with its pending events; an older deskbus then refuses it.
    pub data_dir: PathBuf,
    /// Identifies this help-desk instance in payloads (the seed's `helpdesk_code`):
    /// a letter, then letters, `-` or `_`, at most 8 characters. Optional.
    pub helpdesk_code: Option<String>,
    /// The `origin_uuid` put on events whose producer sent none. Default: a
    /// UUID generated on first start and kept in the data directory.
    pub origin_uuid: Option<String>,
    /// `"full"` (default) fsyncs every spool commit and survives power loss;
    /// `"normal"` survives a process crash only, and is faster on slow disks.
    pub spool_sync: SyncMode,
    /// How long `deskbus run` waits for components to finish after SIGINT or
    /// SIGTERM before it exits anyway (nothing is lost: the spool keeps what
    /// was not delivered). Default `"10s"`.
    pub shutdown_timeout: Duration,
}

/// `[admin]`
#[derive(Debug, Clone)]
pub struct AdminConfig {
    /// Address of `/health`, `/ready` and `/metrics`. Default `127.0.0.1:9680`
    /// (loopback: expose it deliberately).
    pub address: SocketAddr,
    /// Set to `false` to run without the admin listener. Default `true`.
    pub enabled: bool,
}

/// `[log]`
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// `"text"` (default) or `"json"`.
    pub format: LogFormat,
    /// A `tracing` filter such as `"info"` or `"deskbus=debug"`. The
    /// `DESKBUS_LOG` environment variable overrides it. Default `"info"`.
    pub level: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// `[streams.X]`: keys every stream takes
///
/// Whatever its `type`, a stream takes these delivery settings.
#[derive(Debug, Clone)]
pub struct StreamSettings {
    pub config: StreamConfig,
    /// Most batches in flight at once. 1 to 1024. Default 4.
    pub concurrency: usize,
    /// Most events handed to the stream in one call. 1 to 10000. Default 100.
    pub batch_size: usize,
    pub retry: RetryPolicy,
}

/// `[streams.X.retry]`
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// First wait after a failed attempt. Default `"500ms"`.
    pub initial_backoff: Duration,
    /// Longest wait between attempts. Default `"60s"`.
    pub max_backoff: Duration,
    /// Attempts before an entry goes to dead letters; 0 means no limit. Default 0.
    pub max_attempts: u32,
    /// Age after which a failing entry goes to dead letters; `"0s"` means no
    /// limit. Default `"0s"`.
    pub max_age: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(60),
            max_attempts: 0,
            max_age: Duration::ZERO,
        }
    }
}

/// `[use_cases.NAME]`
///
/// A use case selects events from its inputs and sends them to a stream, under a queue.
#[derive(Debug, Clone)]
pub struct UseCaseConfig {
    /// Source ids whose events this use case takes.
    pub inputs: Vec<String>,
    /// Event names taken (exact match).
    pub events: Vec<String>,
    /// Routing-key patterns taken, `*` and `#` as on an AMQP topic exchange.
    pub routing_keys: Vec<RoutingPattern>,
    /// Default `true`.
    pub enabled: bool,
    /// The stream id events are delivered to.
    pub stream: String,
    /// The destination inside the stream (tube, routing key, subject, stream
    /// name, `{queue}` in a file path); a template such as `tickets.{department_id}`.
    /// An event whose template names a missing field goes to dead letters.
    /// Required, except with an `osticket` stream, which has no queues.
    pub queue: Template,
    /// Events with the same key are delivered in order; a template such as
    /// `"{department_id}"`. Default: the data's `ticket_id` when present;
    /// otherwise the event is unordered. An event the template cannot be
    /// rendered for (a missing field) gets the default key, with a warning
    /// and `deskbus_use_case_order_key_fallbacks_total`.
    pub order_key: Option<Template>,
    /// How events become bytes: `fields`, `rename`, `set`, `script` or
    /// `script_file`, `serializer`, `record`, `partition_key`; see "shaping keys".
    pub format: UseCaseFormat,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read config {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(Diagnostics),
}

/// Loads and validates `path`, reading `${VAR}` from the process environment.
/// Returns the config and its warnings.
pub fn load(path: &Path) -> Result<(Config, Diagnostics), LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(path, &text, &|name| std::env::var(name).ok())
}

/// Validates config `text`; `path` is used for messages and nothing else.
pub fn parse(
    path: &Path,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(Config, Diagnostics), LoadError> {
    let ctx = Ctx {
        diags: std::cell::RefCell::new(Diagnostics::new(path, text)),
        env,
    };
    let (root, parse_errors) = DeTable::parse_recoverable(text);
    for e in &parse_errors {
        ctx.error(e.span().unwrap_or(0..0), e.message().trim().to_owned());
    }
    let config = if parse_errors.is_empty() {
        let root = Table::new(&ctx, root.get_ref(), root.span(), String::new());
        Some(validate(path, &root))
    } else {
        None
    };
    let diags = ctx.diags.into_inner();
    match config {
        Some(config) if !diags.has_errors() => Ok((config, diags)),
        _ => Err(LoadError::Invalid(diags)),
    }
}

fn validate(path: &Path, root: &Table<'_, '_, '_>) -> Config {
    let ctx = root.ctx;
    let general = root.table("general");
    let general = parse_general(general.as_ref());
    let admin = parse_admin(root.table("admin").as_ref());
    let log = parse_log(root.table("log").as_ref());

    let mut sources = IndexMap::new();
    if let Some(table) = root.table("sources") {
        for (id, value) in table.entries() {
            let Some(component) = component_table(&table, id.get_ref(), value) else {
                continue;
            };
            if let Some(source) = crate::sources::parse_config(&component) {
                sources.insert(id.get_ref().to_string(), source);
            }
            component.finish();
        }
    }
    let mut streams = IndexMap::new();
    if let Some(table) = root.table("streams") {
        for (id, value) in table.entries() {
            let Some(component) = component_table(&table, id.get_ref(), value) else {
                continue;
            };
            if let Some(stream) = parse_stream(&component) {
                streams.insert(id.get_ref().to_string(), stream);
            }
            component.finish();
        }
    }
    let mut use_cases = IndexMap::new();
    if let Some(table) = root.table("use_cases") {
        for (name, value) in table.entries() {
            let Some(component) = component_table(&table, name.get_ref(), value) else {
                continue;
            };
            if let Some(use_case) =
                parse_use_case(&component, name.get_ref(), &general, &sources, &streams)
            {
                use_cases.insert(name.get_ref().to_string(), use_case);
            }
            component.finish();
        }
        if use_cases.is_empty() && ctx.diags.borrow().errors().next().is_none() {
            ctx.warning(
                table.span.clone(),
                "no use case is defined: events will be refused",
            );
        }
    }
    for (id, source) in &sources {
        if !use_cases.values().any(|u| u.inputs.contains(id)) {
            let span = root
                .table("sources")
                .map(|t| t.key_span(id))
                .unwrap_or(0..0);
            ctx.warning(
                span,
                format!("source `{id}` feeds no use case ({})", source.type_name()),
            );
        }
    }
    root.finish();
    Config {
        path: path.to_owned(),
        general,
        admin,
        log,
        sources,
        streams,
        use_cases,
    }
}

/// Component tables (`[sources.web]`) are only read through their own map,
/// so mark them known on the parent, and check that the id is usable.
fn component_table<'c, 'e, 'i>(
    parent: &Table<'c, 'e, 'i>,
    id: &str,
    value: &'c toml::Spanned<DeValue<'i>>,
) -> Option<Table<'c, 'e, 'i>> {
    let name = parent.path(id);
    if id.is_empty()
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        parent.ctx.error(
            parent.key_span(id),
            format!("component id `{id}` may hold only letters, digits, '_' and '-'"),
        );
    }
    match value.get_ref() {
        DeValue::Table(table) => Some(Table::new(parent.ctx, table, value.span(), name)),
        other => {
            parent.ctx.error(
                value.span(),
                format!("`{name}` must be a table, found {}", other.type_str()),
            );
            None
        }
    }
}

fn parse_general(t: Option<&Table<'_, '_, '_>>) -> GeneralConfig {
    let mut general = GeneralConfig {
        data_dir: PathBuf::from("./deskbus-data"),
        helpdesk_code: None,
        origin_uuid: None,
        spool_sync: SyncMode::Full,
        shutdown_timeout: Duration::from_secs(10),
    };
    let Some(t) = t else { return general };
    general.data_dir = t.path_or("data_dir", "./deskbus-data");
    general.helpdesk_code = t.parsed("helpdesk_code", |code| {
        names::check_helpdesk_code(code).map(|()| code.to_owned())
    });
    general.origin_uuid = t.string("origin_uuid").map(|s| s.value);
    general.spool_sync = t
        .parsed("spool_sync", |s| match s {
            "full" => Ok(SyncMode::Full),
            "normal" => Ok(SyncMode::Normal),
            other => Err(format!("{other:?} is not \"full\" or \"normal\"")),
        })
        .unwrap_or(SyncMode::Full);
    general.shutdown_timeout = t.duration_or("shutdown_timeout", general.shutdown_timeout);
    t.finish();
    general
}

fn parse_admin(t: Option<&Table<'_, '_, '_>>) -> AdminConfig {
    let default: SocketAddr = ([127, 0, 0, 1], 9680).into();
    let Some(t) = t else {
        return AdminConfig {
            address: default,
            enabled: true,
        };
    };
    let config = AdminConfig {
        address: t.parsed("address", parse_socket_addr).unwrap_or(default),
        enabled: t.bool_or("enabled", true),
    };
    t.finish();
    config
}

fn parse_log(t: Option<&Table<'_, '_, '_>>) -> LogConfig {
    let mut log = LogConfig {
        format: LogFormat::Text,
        level: "info".into(),
    };
    let Some(t) = t else { return log };
    log.format = t
        .parsed("format", |s| match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("{other:?} is not \"text\" or \"json\"")),
        })
        .unwrap_or(LogFormat::Text);
    log.level = t.string_or("level", "info");
    t.finish();
    log
}

pub(crate) fn parse_socket_addr(text: &str) -> Result<SocketAddr, String> {
    text.parse()
        .map_err(|_| format!("{text:?} is not an address like 127.0.0.1:9681"))
}

fn parse_stream(t: &Table<'_, '_, '_>) -> Option<StreamSettings> {
    let config = crate::streams::parse_config(t);
    let concurrency = t
        .integer("concurrency", 1..=MAX_CONCURRENCY as i64)
        .unwrap_or(4) as usize;
    let batch_size = t
        .integer("batch_size", 1..=MAX_BATCH_SIZE as i64)
        .unwrap_or(100) as usize;
    let retry = match t.table("retry") {
        None => RetryPolicy::default(),
        Some(r) => {
            let d = RetryPolicy::default();
            let policy = RetryPolicy {
                initial_backoff: r.duration_or("initial_backoff", d.initial_backoff),
                max_backoff: r.duration_or("max_backoff", d.max_backoff),
                max_attempts: r.integer("max_attempts", 0..=1_000_000).unwrap_or(0) as u32,
                max_age: r.duration_or("max_age", d.max_age),
            };
            r.finish();
            policy
        }
    };
    Some(StreamSettings {
        config: config?,
        concurrency,
        batch_size,
        retry,
    })
}

fn parse_use_case(
    t: &Table<'_, '_, '_>,
    name: &str,
    general: &GeneralConfig,
    sources: &IndexMap<String, SourceConfig>,
    streams: &IndexMap<String, StreamSettings>,
) -> Option<UseCaseConfig> {
    let ctx = t.ctx;
    let inputs = t.string_list("inputs");
    if inputs.is_none() {
        ctx.error(
            t.span.clone(),
            format!(
                "[{}] needs `inputs`, the source ids it takes events from",
                t.name
            ),
        );
    }
    let inputs = inputs.unwrap_or_default();
    for input in &inputs {
        if !sources.contains_key(&input.value) {
            ctx.error(
                input.span.clone(),
                unknown_id("source", &input.value, sources.keys()),
            );
        }
    }
    let preset = preset(name);
    let mut events: Vec<Located<String>> = t.string_list("events").unwrap_or_default();
    let routing_keys: Vec<RoutingPattern> = t
        .string_list("routing_keys")
        .unwrap_or_default()
        .into_iter()
        .filter_map(|p| match RoutingPattern::parse(&p.value) {
            Ok(pattern) => Some(pattern),
            Err(e) => {
                ctx.error(p.span, e.to_string());
                None
            }
        })
        .collect();
    if let Some((event, _)) = preset
        .as_ref()
        .filter(|_| events.is_empty() && !t.has("routing_keys"))
    {
        events.push(Located {
            value: (*event).to_owned(),
            span: t.span.clone(),
        });
    }
    if events.is_empty() && routing_keys.is_empty() && !t.has("routing_keys") {
        ctx.error(
            t.span.clone(),
            format!(
                "[{}] needs `events` (names) or `routing_keys` (patterns) to select events",
                t.name
            ),
        );
    }
    let enabled = t.bool_or("enabled", true);
    let stream = t.string("stream");
    match &stream {
        None => ctx.error(
            t.span.clone(),
            format!("[{}] needs `stream`, the stream id to deliver to", t.name),
        ),
        Some(s) if !streams.contains_key(&s.value) => ctx.error(
            s.span.clone(),
            unknown_id("stream", &s.value, streams.keys()),
        ),
        Some(_) => {}
    }
    // The osTicket stream has no queues: every ticket goes to the one API.
    let stream_type = stream
        .as_ref()
        .and_then(|s| streams.get(&s.value))
        .map(|s| s.config.type_name());
    let takes_tickets = stream_type == Some("osticket");
    if takes_tickets && t.has("queue") {
        ctx.warning(
            t.key_span("queue"),
            format!(
                "`{}`: an osticket stream has no queues; it is ignored",
                t.path("queue")
            ),
        );
    }
    let queue = template(t, "queue").or_else(|| {
        if takes_tickets {
            return Template::parse(OSTICKET_QUEUE).ok();
        }
        ctx.error(
            t.span.clone(),
            format!(
                "[{}] needs `queue`, the destination inside the stream",
                t.name
            ),
        );
        None
    });
    // A constant queue can be checked against the stream's naming rules now;
    // a templated one is checked per event (a bad name goes to dead letters).
    if let (Some(queue), Some(stream)) =
        (&queue, stream.as_ref().and_then(|s| streams.get(&s.value)))
        && queue.is_constant()
        && let Err(reason) = stream.config.check_queue(queue.as_str())
    {
        ctx.error(
            t.key_span("queue"),
            format!("`{}`: {reason}", t.path("queue")),
        );
    }
    let order_key = template(t, "order_key");
    let ticket = parse_ticket(t, stream.as_ref(), stream_type);
    let format = parse_format(
        t,
        preset.as_ref().map(|(_, fields)| fields.as_slice()),
        general,
    )
    .map(|mut f| {
        f.queue = queue.clone();
        f.ticket = ticket.map(std::sync::Arc::new);
        f
    });
    Some(UseCaseConfig {
        inputs: inputs.into_iter().map(|i| i.value).collect(),
        events: events.into_iter().map(|e| e.value).collect(),
        routing_keys,
        enabled,
        stream: stream?.value,
        queue: queue?,
        order_key,
        format: format?,
    })
}

/// The queue of a use case whose stream is an osticket stream: it has no
/// queues, but entries and dead letters show one.
const OSTICKET_QUEUE: &str = "tickets";

/// The most a stream's `concurrency` and `batch_size` may be: together,
/// the most entries a stream has in flight.
pub(crate) const MAX_CONCURRENCY: usize = 1024;
pub(crate) const MAX_BATCH_SIZE: usize = 10_000;

/// `ticket`, which a use case needs when, and only when, its stream is an
/// osticket stream. Its templates are the payload, so no `serializer`.
fn parse_ticket(
    t: &Table<'_, '_, '_>,
    stream: Option<&Located<String>>,
    stream_type: Option<&str>,
) -> Option<TicketMapping> {
    let ctx = t.ctx;
    let ticket = t
        .table("ticket")
        .and_then(|table| TicketMapping::from_table(&table));
    match (stream_type, t.has("ticket")) {
        (Some("osticket"), false) => ctx.error(
            stream.map_or(t.span.clone(), |s| s.span.clone()),
            format!(
                "[{}] delivers to an osticket stream, so it needs `ticket`, the ticket to create \
                 (e.g. ticket = {{ name = \"…\", email = \"…\", subject = \"…\", message = \"…\" }})",
                t.name
            ),
        ),
        (Some(other), true) if other != "osticket" => ctx.error(
            t.key_span("ticket"),
            format!(
                "`{}` applies to osticket streams only; stream `{}` is a {other} stream",
                t.path("ticket"),
                stream.map_or("", |s| s.value.as_str())
            ),
        ),
        _ => {}
    }
    if t.has("ticket") {
        for key in ["serializer", "record", "partition_key"] {
            if t.has(key) {
                ctx.error(
                    t.key_span(key),
                    format!(
                        "[{}] has a `ticket`, which is the payload; `{key}` does not apply",
                        t.name
                    ),
                );
            }
        }
    }
    ticket
}

fn parse_format(
    t: &Table<'_, '_, '_>,
    preset_fields: Option<&[&str]>,
    general: &GeneralConfig,
) -> Option<UseCaseFormat> {
    let ctx = t.ctx;
    let mut format = UseCaseFormat {
        fields: t
            .string_list("fields")
            .map(|f| f.into_iter().map(|f| f.value).collect()),
        helpdesk_code: general.helpdesk_code.clone(),
        partition_key: template(t, "partition_key"),
        ..UseCaseFormat::default()
    };
    if let Some(rename) = t.string_map("rename") {
        format.rename = rename.into_iter().map(|(k, v)| (k, v.value)).collect();
    }
    if let Some(set) = t.string_map("set") {
        for (field, text) in set {
            match Template::parse(&text.value) {
                Ok(template) => format.set.push((field, template)),
                Err(e) => ctx.error(text.span, format!("`{}.set.{field}`: {e}", t.name)),
            }
        }
    }
    let script = match (t.string("script"), t.string("script_file")) {
        (Some(_), Some(file)) => {
            ctx.error(
                file.span,
                format!("[{}] takes `script` or `script_file`, not both", t.name),
            );
            None
        }
        (Some(inline), None) => Some(inline),
        (None, Some(file)) => match std::fs::read_to_string(&file.value) {
            Ok(text) => Some(Located {
                value: text,
                span: file.span,
            }),
            Err(e) => {
                ctx.error(
                    file.span,
                    format!("cannot read script {:?}: {e}", file.value),
                );
                None
            }
        },
        (None, None) => None,
    };
    if let Some(script) = script {
        match Script::compile(&script.value) {
            Ok(compiled) => format.script = Some(std::sync::Arc::new(compiled)),
            Err(e) => ctx.error(script.span, e),
        }
    }
    let serializer = t.json("serializer");
    let record = t.json("record");
    if let Some((serializer_json, serializer_span)) = serializer {
        let spec = |json: serde_json::Value,
                    span: Range<usize>,
                    what: &str|
         -> Option<deskbus_format::FormatSpec> {
            serde_json::from_value(json)
                .map_err(|e| ctx.error(span, format!("`{}.{what}`: {e}", t.name)))
                .ok()
        };
        let serializer_spec = spec(serializer_json, serializer_span.clone(), "serializer");
        let (record_spec, record_span) = match record {
            Some((json, span)) => (spec(json, span.clone(), "record"), span),
            None => (
                Some(deskbus_format::FormatSpec::new("raw")),
                serializer_span.clone(),
            ),
        };
        if let (Some(serializer), Some(record)) = (serializer_spec, record_spec) {
            match deskbus_format::FormatRegistry::with_builtins().build_stack(&serializer, &record)
            {
                Ok(stack) => format.stack = Some(std::sync::Arc::new(stack)),
                Err(e) => ctx.error(
                    serializer_span.start..record_span.end.max(serializer_span.end),
                    format!("[{}] format stack: {e}", t.name),
                ),
            }
            for warning in deskbus_format::lint_stack(&serializer, &record) {
                ctx.warning(record_span.clone(), format!("[{}]: {warning}", t.name));
            }
        }
        if format.fields.is_none() {
            format.fields = preset_fields.map(|f| f.iter().map(|s| s.to_string()).collect());
        }
    } else if let Some((_, span)) = record {
        ctx.error(
            span,
            format!(
                "[{}] has a `record` but no `serializer`; the record wraps the serializer's bytes",
                t.name
            ),
        );
    }
    Some(format)
}

fn template(t: &Table<'_, '_, '_>, key: &'static str) -> Option<Template> {
    let text: Located<String> = t.string(key)?;
    located_template(t, key, text)
}

/// Parses `text`, the value of `key` in `t`; an error is reported at its place.
pub(crate) fn located_template(
    t: &Table<'_, '_, '_>,
    key: &str,
    text: Located<String>,
) -> Option<Template> {
    match Template::parse(&text.value) {
        Ok(template) => Some(template),
        Err(e) => {
            t.ctx.error(text.span, format!("`{}.{key}`: {e}", t.name));
            None
        }
    }
}

fn unknown_id<'a>(what: &str, id: &str, known: impl Iterator<Item = &'a String>) -> String {
    let known: BTreeSet<&String> = known.collect();
    let nearest = known
        .iter()
        .map(|k| (strsim::jaro_winkler(k, id), k))
        .filter(|(score, _)| *score > 0.7)
        .max_by(|a, b| a.0.total_cmp(&b.0));
    match nearest {
        Some((_, k)) => format!("no {what} named `{id}`; did you mean `{k}`?"),
        None if known.is_empty() => format!("no {what} named `{id}`; none is defined"),
        None => format!(
            "no {what} named `{id}`; defined: {}",
            known
                .iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Suggests the nearest of `known` for an unknown `type`.
pub(crate) fn unknown_type(kind: &str, found: &str, known: &[&str]) -> String {
    let nearest = known
        .iter()
        .map(|k| (strsim::jaro_winkler(k, found), k))
        .filter(|(score, _)| *score > 0.7)
        .max_by(|a, b| a.0.total_cmp(&b.0));
    match nearest {
        Some((_, k)) => format!("unknown {kind} type `{found}`; did you mean `{k}`?"),
        None => format!("unknown {kind} type `{found}`; known: {}", known.join(", ")),
    }
}

/// Reads a component's `type` and hands it to the caller's match.
pub(crate) fn component_type(t: &Table<'_, '_, '_>, kind: &str) -> Option<Located<String>> {
    let found = t.string("type");
    if found.is_none() && !t.has("type") {
        t.ctx.error(
            t.span.clone(),
            format!("[{}] needs `type`, the {kind} type", t.name),
        );
    }
    found
}
