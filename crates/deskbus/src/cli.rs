//! The command line: `run`, `check`, `dlq` and `spool`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use deskbus_spool::DeadLetterSelector;

use crate::config::{self, Config, LoadError, LogFormat};
use crate::runtime::{self, RunError};
use crate::streams::StreamContext;

#[derive(Debug, Parser)]
#[command(
    name = "deskbus",
    version,
    about = "Integration hub for help desks, contact centres and message buses"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the pipelines of CONFIG until SIGINT or SIGTERM.
    Run { config: PathBuf },
    /// Validate CONFIG; print every problem as file:line:column: message.
    Check {
        config: PathBuf,
        /// Also connect to every stream and report whether it answers.
        #[arg(long)]
        connect: bool,
    },
    /// Show exactly the bytes a use case would send for the event on stdin.
    ///
    /// The input is one envelope (`{"name", "data", ...}`); its `data` is the
    /// tuple, in order. Non-printable bytes are shown escaped unless `--raw`.
    Format {
        config: PathBuf,
        #[arg(long)]
        use_case: String,
        /// Write the bytes unchanged.
        #[arg(long)]
        raw: bool,
    },
    /// Inspect and act on dead letters.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// Inspect the spool.
    Spool {
        #[command(subcommand)]
        command: SpoolCommand,
    },
}

#[derive(Debug, Args)]
pub struct Target {
    /// The config whose data directory to use.
    #[arg(short, long, default_value = "deskbus.toml")]
    pub config: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// List dead letters, newest first.
    List {
        #[command(flatten)]
        target: Target,
        /// Only this stream's.
        #[arg(long)]
        stream: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Show one dead letter with its payload.
    Show {
        #[command(flatten)]
        target: Target,
        id: i64,
    },
    /// Move dead letters back to their stream's queue (same event id).
    Retry {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        which: Which,
    },
    /// Delete dead letters.
    Drop {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        which: Which,
    },
}

#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct Which {
    /// One dead letter by id.
    pub id: Option<i64>,
    /// Every dead letter of a stream.
    #[arg(long)]
    pub stream: Option<String>,
    /// Every dead letter.
    #[arg(long)]
    pub all: bool,
}

#[derive(Debug, Subcommand)]
pub enum SpoolCommand {
    /// Depth, retries, oldest entry and dead letters per stream; source cursors.
    Stats {
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Run(#[from] RunError),
    #[error("spool command failed")]
    Spool(#[from] deskbus_spool::SpoolError),
    #[error("cannot start the async runtime")]
    Runtime(#[source] std::io::Error),
    #[error("cannot write output")]
    Output(#[from] std::io::Error),
    #[error("{0}")]
    Preview(String),
}

/// Exit code of an invalid config, as `deskbus check` documents.
const INVALID_CONFIG: u8 = 2;

pub fn run(cli: Cli) -> Result<ExitCode, CliError> {
    match cli.command {
        Command::Check { config, connect } => check(&config, connect),
        Command::Run { config } => {
            let config = match load_or_report(&config)? {
                Ok(config) => config,
                Err(code) => return Ok(code),
            };
            init_logging(&config);
            tokio_runtime()?.block_on(runtime::run(config))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Format {
            config,
            use_case,
            raw,
        } => format_preview(&config, &use_case, raw),
        Command::Dlq { command } => dlq(command),
        Command::Spool {
            command: SpoolCommand::Stats { target },
        } => spool_stats(&target.config),
    }
}

fn tokio_runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(CliError::Runtime)
}

/// Loads a config; an invalid one is printed and becomes exit code 2.
fn load_or_report(path: &Path) -> Result<Result<Config, ExitCode>, CliError> {
    match config::load(path) {
        Ok((config, warnings)) => {
            eprint!("{warnings}");
            Ok(Ok(config))
        }
        Err(LoadError::Invalid(diagnostics)) => {
            eprint!("{diagnostics}");
            let errors = diagnostics.errors().count();
            eprintln!(
                "{}: {errors} error{}",
                path.display(),
                if errors == 1 { "" } else { "s" }
            );
            Ok(Err(ExitCode::from(INVALID_CONFIG)))
        }
        Err(error) => Err(error.into()),
    }
}

fn check(path: &Path, connect: bool) -> Result<ExitCode, CliError> {
    let config = match load_or_report(path)? {
        Ok(config) => config,
        Err(code) => return Ok(code),
    };
    println!(
        "{}: ok ({} sources, {} streams, {} use cases)",
        path.display(),
        config.sources.len(),
        config.streams.len(),
        config.use_cases.len()
    );
    if !connect {
        return Ok(ExitCode::SUCCESS);
    }
    let failures = tokio_runtime()?.block_on(async {
        let mut failures = 0;
        for (id, settings) in &config.streams {
            let ctx = StreamContext {
                id: id.clone(),
                spool: None,
            };
            let outcome = match settings.config.build(&ctx) {
                Ok(stream) => {
                    tokio::time::timeout(std::time::Duration::from_secs(10), stream.healthcheck())
                        .await
                        .unwrap_or_else(|_| Err("no answer within 10s".into()))
                }
                Err(reason) => Err(reason),
            };
            match outcome {
                Ok(()) => println!("stream {id} ({}): ok", settings.config.type_name()),
                Err(reason) => {
                    failures += 1;
                    println!(
                        "stream {id} ({}): FAILED: {reason}",
                        settings.config.type_name()
                    );
                }
            }
        }
        // Sources that reach an upstream (a database, a broker) are checked
        // too; listening and generating sources have nothing to reach.
        for (id, source) in &config.sources {
            let check = crate::sources::healthcheck(source);
            let Some(outcome) = tokio::time::timeout(std::time::Duration::from_secs(10), check)
                .await
                .unwrap_or_else(|_| Some(Err("no answer within 10s".into())))
            else {
                continue;
            };
            match outcome {
                Ok(detail) => println!("source {id} ({}): ok ({detail})", source.type_name()),
                Err(reason) => {
                    failures += 1;
                    println!("source {id} ({}): FAILED: {reason}", source.type_name());
                }
            }
        }
        failures
    });
    Ok(if failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn init_logging(config: &Config) {
    use tracing_subscriber::EnvFilter;
    let filter = std::env::var("DESKBUS_LOG").unwrap_or_else(|_| config.log.level.clone());
    let filter = EnvFilter::try_new(&filter).unwrap_or_else(|_| EnvFilter::new("info"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = match config.log.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

fn open_spool(path: &Path) -> Result<Result<deskbus_spool::Spool, ExitCode>, CliError> {
    Ok(open_with_config(path)?.map(|(_, spool)| spool))
}

fn open_with_config(
    path: &Path,
) -> Result<Result<(Config, deskbus_spool::Spool), ExitCode>, CliError> {
    let config = match load_or_report(path)? {
        Ok(config) => config,
        Err(code) => return Ok(Err(code)),
    };
    // These commands read or change a spool deskbus made: they must not
    // create an empty one (a relative `data_dir` from another working
    // directory) and report it as having no dead letters.
    let path = config.general.data_dir.join("spool.db");
    if !path.exists() {
        eprintln!(
            "no spool at {}: deskbus has not run with this config's `data_dir` \
             (relative paths are relative to the working directory)",
            path.display()
        );
        return Ok(Err(ExitCode::FAILURE));
    }
    let spool = runtime::open_spool(&config)?;
    Ok(Ok((config, spool)))
}

fn selector(which: Which) -> DeadLetterSelector {
    match (which.id, which.stream) {
        (Some(id), _) => DeadLetterSelector::One(id),
        (None, Some(stream)) => DeadLetterSelector::Stream(stream),
        (None, None) => DeadLetterSelector::All,
    }
}

fn dlq(command: DlqCommand) -> Result<ExitCode, CliError> {
    let mut out = std::io::stdout().lock();
    match command {
        DlqCommand::List {
            target,
            stream,
            limit,
        } => {
            let spool = match open_spool(&target.config)? {
                Ok(s) => s,
                Err(code) => return Ok(code),
            };
            let letters = spool.dead_letters(stream.as_deref(), limit)?;
            writeln!(
                out,
                "{:>6}  {:<12} {:<16} {:<36} {:>8}  reason",
                "id", "stream", "use case", "event id", "attempts"
            )?;
            for d in &letters {
                // A source's dead letter has no stream: it is input that
                // never became an event (see `RejectedInput`).
                let (stream, use_case) = if d.stream.is_empty() {
                    ("(source)", format!("{} (input)", d.use_case))
                } else {
                    (d.stream.as_str(), d.use_case.clone())
                };
                writeln!(
                    out,
                    "{:>6}  {:<12} {:<16} {:<36} {:>8}  {}",
                    d.id, stream, use_case, d.event_id, d.attempts, d.reason
                )?;
            }
            writeln!(
                out,
                "{} dead letter{}",
                letters.len(),
                if letters.len() == 1 { "" } else { "s" }
            )?;
        }
        DlqCommand::Show { target, id } => {
            let spool = match open_spool(&target.config)? {
                Ok(s) => s,
                Err(code) => return Ok(code),
            };
            let d = spool.dead_letter(id)?;
            let payload: serde_json::Value =
                serde_json::from_slice(&d.payload).unwrap_or_else(|_| {
                    serde_json::Value::String(String::from_utf8_lossy(&d.payload).into_owned())
                });
            let shown = serde_json::json!({
                "id": d.id, "stream": d.stream, "use_case": d.use_case, "queue": d.queue,
                "event_id": d.event_id, "attempts": d.attempts, "reason": d.reason,
                "enqueued_at": fmt_ms(d.enqueued_at), "failed_at": fmt_ms(d.failed_at), "event": payload,
            });
            writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&shown).unwrap_or_default()
            )?;
        }
        DlqCommand::Retry { target, which } => {
            let (config, spool) = match open_with_config(&target.config)? {
                Ok(opened) => opened,
                Err(code) => return Ok(code),
            };
            let which = selector(which);
            // Retried into a stream the config no longer has, an entry
            // would wait where no dispatcher serves (and no metric shows).
            let streams: Vec<String> = match &which {
                DeadLetterSelector::One(id) => vec![spool.dead_letter(*id)?.stream],
                DeadLetterSelector::Stream(stream) => vec![stream.clone()],
                DeadLetterSelector::All => spool
                    .stats()?
                    .streams
                    .into_iter()
                    .filter(|(_, s)| s.dead_letters > 0)
                    .map(|(name, _)| name)
                    .collect(),
            };
            let missing: Vec<String> = streams
                .into_iter()
                .filter(|s| !s.is_empty() && !config.streams.contains_key(s))
                .map(|s| format!("`{s}`"))
                .collect();
            if !missing.is_empty() {
                eprintln!(
                    "nothing retried: dead letters of {} would wait for a stream that is not in \
                     the config; add it back, or drop them (`deskbus dlq drop --stream NAME`)",
                    missing.join(", ")
                );
                return Ok(ExitCode::FAILURE);
            }
            let moved = tokio_runtime()?.block_on(spool.retry_dead_letters(which))?;
            writeln!(
                out,
                "{moved} dead letter{} moved back to the spool",
                if moved == 1 { "" } else { "s" }
            )?;
        }
        DlqCommand::Drop { target, which } => {
            let spool = match open_spool(&target.config)? {
                Ok(s) => s,
                Err(code) => return Ok(code),
            };
            let dropped = tokio_runtime()?.block_on(spool.drop_dead_letters(selector(which)))?;
            writeln!(
                out,
                "{dropped} dead letter{} dropped",
                if dropped == 1 { "" } else { "s" }
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn spool_stats(path: &Path) -> Result<ExitCode, CliError> {
    let (config, spool) = match open_with_config(path)? {
        Ok(opened) => opened,
        Err(code) => return Ok(code),
    };
    let mut stats = spool.stats()?;
    // Every configured stream is listed, idle ones too.
    for stream in config.streams.keys() {
        stats.streams.entry(stream.clone()).or_default();
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "spool: {}", spool.path().display())?;
    writeln!(
        out,
        "{:<16} {:>10} {:>10} {:>14} {:>12}",
        "stream", "depth", "retrying", "oldest age", "dead letters"
    )?;
    let now = deskbus_spool::now_ms();
    for (stream, s) in &stats.streams {
        let age = s.oldest_enqueued_at.map_or("-".to_owned(), |t| {
            format!("{:.1}s", (now - t) as f64 / 1000.0)
        });
        writeln!(
            out,
            "{stream:<16} {:>10} {:>10} {age:>14} {:>12}",
            s.depth, s.retrying, s.dead_letters
        )?;
    }
    for (source, value) in &stats.cursors {
        writeln!(out, "cursor {source}: {value}")?;
    }
    Ok(ExitCode::SUCCESS)
}

fn format_preview(path: &Path, use_case: &str, raw: bool) -> Result<ExitCode, CliError> {
    let config = match load_or_report(path)? {
        Ok(config) => config,
        Err(code) => return Ok(code),
    };
    let Some(case) = config.use_cases.get(use_case) else {
        let known: Vec<&String> = config.use_cases.keys().collect();
        return Err(CliError::Preview(format!(
            "no use case named `{use_case}`; defined: {known:?}"
        )));
    };
    let mut input = String::new();
    std::io::Read::read_to_string(&mut std::io::stdin(), &mut input)?;
    let envelope: deskbus_event::EnvelopeInput = serde_json::from_str(&input)
        .map_err(|e| CliError::Preview(format!("stdin is not one event envelope: {e}")))?;
    let origin = config
        .general
        .origin_uuid
        .clone()
        .unwrap_or_else(|| "00000000-0000-0000-0000-000000000000".into());
    let source = case
        .inputs
        .first()
        .cloned()
        .unwrap_or_else(|| "preview".into());
    let event = envelope
        .into_event(&source, &origin)
        .map_err(|e| CliError::Preview(e.to_string()))?;
    let queue = case
        .queue
        .render(&event)
        .map_err(|e| CliError::Preview(format!("queue: {e}")))?;
    let bytes = case.format.encode(&event).map_err(CliError::Preview)?;
    eprintln!(
        "use case {use_case} → stream {}, queue {queue:?}, {} bytes, {}",
        case.stream,
        bytes.len(),
        case.format.content_type()
    );
    let mut out = std::io::stdout().lock();
    if raw {
        out.write_all(&bytes)?;
    } else {
        writeln!(out, "{}", escape_bytes(&bytes))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Printable text as is; control characters (and U+2028/U+2029), and bytes
/// that are not UTF-8, escaped. A backslash is shown as is, so JSON escapes
/// read naturally; `--raw` gives the exact bytes.
pub fn escape_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}') => {
                    out.push_str(&format!("\\u{{{:04x}}}", c as u32))
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

fn fmt_ms(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| ms.to_string())
}
