use std::time::Duration;

use super::Service;
use crate::config::Secret;
use crate::config::walker::Table;

/// `[streams.X]` `type = "kinesis_firehose"` or `type = "kinesis_streams"`
///
/// Puts events into Amazon Kinesis Data Firehose (`PutRecordBatch`; the use
/// case's queue is the delivery stream name, 1 to 64 of `[a-zA-Z0-9_.-]`) or
/// Kinesis Data Streams (`PutRecords`; the queue is the stream name, 1 to 128
/// of the same characters, and the use case's order key is the partition
/// key: one ticket's events stay on one shard, in order, while tickets
/// spread over the shards). Any other name sends the event to dead letters.
///
/// Batches stay within the services' limits, counted after base64: at most
/// 500 records and 4 MiB (Firehose) or 5 MiB (Data Streams) per call. A
/// Firehose record is the payload followed by a newline (added when the
/// payload does not end with one, since Firehose concatenates records at
/// the destination); a Data Streams record is the payload as is. A payload
/// larger than a record (1,000 KiB for Firehose; 1 MiB with its partition
/// key for Data Streams) goes to dead letters.
///
/// When AWS accepts a call but refuses some of its records, only those are
/// put again, each one whose code a whole call would be retried for
/// (throttling, `ServiceUnavailableException`, `InternalFailure`, refused
/// credentials...); a record refused with any other code goes to dead
/// letters. Whole calls failing with 5xx, throttling, a connection error
/// or refused credentials
/// (unknown, expired, or lacking a permission: an operator can fix them
/// while the events wait, within `retry.max_attempts` and `retry.max_age`)
/// are retried; other 4xx (an unknown stream) send the call's events to
/// dead letters, except a call refused as invalid, whose records are then
/// put one by one so that only the bad ones go. Requests are signed with
/// AWS Signature Version 4.
///
/// Credentials, in this order: `access_key_id` with `secret_access_key` (or
/// `secret_access_key_file`) and an optional `session_token` from this
/// table; else the environment's `AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY` and optional `AWS_SESSION_TOKEN`; else the
/// section `profile` of the shared credentials file (`AWS_SHARED_CREDENTIALS_FILE`,
/// default `~/.aws/credentials`). They are read once, when the stream
/// starts: restart deskbus after rotating temporary credentials.
#[derive(Debug, Clone)]
pub struct KinesisConfig {
    /// The AWS region, e.g. `"eu-west-1"`. Required.
    pub region: String,
    /// Another endpoint than the region's (`https://firehose.<region>.amazonaws.com`
    /// or `https://kinesis.<region>.amazonaws.com`), e.g. a VPC endpoint or
    /// an emulator: `"http://127.0.0.1:4566"`. Optional.
    pub endpoint: Option<String>,
    /// The access key id; needs `secret_access_key`. Optional: see the
    /// order above.
    pub access_key_id: Option<String>,
    /// The secret access key (or `secret_access_key_file`, a file holding
    /// it). Only with `access_key_id`.
    pub secret_access_key: Option<Secret>,
    /// A session token for temporary credentials (or `session_token_file`).
    /// Only with `access_key_id`. Optional.
    pub session_token: Option<Secret>,
    /// The section of the shared credentials file used when neither this
    /// table nor the environment hold credentials. Default `"default"`.
    pub profile: String,
    /// Firehose only: several small events of one delivery stream per
    /// record, newline-delimited, up to the record limit (fewer records,
    /// and Firehose bills by record in 5 KB steps). What happens to a
    /// record (stored, retried, dead-lettered) happens to all its events.
    /// Default `false`.
    pub pack: bool,
    /// How long one call may take. Default `"30s"`.
    pub timeout: Duration,
}

impl KinesisConfig {
    pub(crate) fn from_table(t: &Table<'_, '_, '_>, service: Service) -> Option<KinesisConfig> {
        let region = t.parsed("region", |s| {
            if !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            {
                Ok(s.to_owned())
            } else {
                Err(format!("{s:?} is not an AWS region like \"eu-west-1\""))
            }
        });
        if region.is_none() && !t.has("region") {
            t.ctx
                .error(t.span.clone(), format!("[{}] needs `region`", t.name));
        }
        let endpoint = t.parsed("endpoint", |s| {
            let url = reqwest::Url::parse(s).map_err(|e| format!("{s:?} is not a URL: {e}"))?;
            if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
                return Err(format!("{s:?} is not an http:// or https:// URL"));
            }
            Ok(s.to_owned())
        });
        let access_key_id = t.string("access_key_id");
        let secret_access_key = t.secret("secret_access_key", "secret_access_key_file");
        let session_token = t.secret("session_token", "session_token_file");
        match (&access_key_id, &secret_access_key) {
            (Some(_), None) if !t.has("secret_access_key") && !t.has("secret_access_key_file") => {
                t.ctx.error(
                    t.key_span("access_key_id"),
                    format!(
                        "`{}` needs `secret_access_key` or `secret_access_key_file`",
                        t.path("access_key_id")
                    ),
                );
            }
            (None, Some(_)) if !t.has("access_key_id") => {
                let key = match t.has("secret_access_key") {
                    true => "secret_access_key",
                    false => "secret_access_key_file",
                };
                t.ctx.error(
                    t.key_span(key),
                    format!("`{}` needs `access_key_id`", t.path(key)),
                );
            }
            _ => {}
        }
        if session_token.is_some() && !t.has("access_key_id") {
            let key = match t.has("session_token") {
                true => "session_token",
                false => "session_token_file",
            };
            t.ctx.error(
                t.key_span(key),
                format!("`{}` needs `access_key_id`", t.path(key)),
            );
        }
        let profile = t.string_or("profile", "default");
        // Read only for Firehose: for Data Streams the key is then reported
        // as unknown, which is what it is there.
        let pack = match service {
            Service::Firehose => t.bool_or("pack", false),
            Service::DataStreams => false,
        };
        let timeout = t.duration_or("timeout", Duration::from_secs(30));
        if timeout.is_zero() {
            t.ctx.error(
                t.key_span("timeout"),
                format!("`{}` must be longer than 0s", t.path("timeout")),
            );
        }
        Some(KinesisConfig {
            region: region?,
            endpoint,
            access_key_id: access_key_id.map(|k| k.value),
            secret_access_key,
            session_token,
            profile,
            pack,
            timeout,
        })
    }
}
