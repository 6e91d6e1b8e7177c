//! `type = "kinesis_firehose"` and `type = "kinesis_streams"`: batches of
//! records over AWS JSON 1.1 (`PutRecordBatch`, `PutRecords`), signed with
//! SigV4, retrying only the records AWS refused.

mod client;
mod config;

use std::ops::Range;
use std::path::PathBuf;

use aws_credential_types::Credentials;
use indexmap::IndexMap;
use serde::Deserialize;

use client::{CallError, Client, base64_encode, base64_len, retryable_code};
pub use config::KinesisConfig;

use super::{BoxFuture, Delivery, DeliveryError, Stream, all_failed};
use crate::internal_events::error_chain;

/// Which Kinesis service a stream puts records into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// Amazon Data Firehose (`PutRecordBatch`); the queue is the delivery stream.
    Firehose,
    /// Kinesis Data Streams (`PutRecords`); the queue is the stream.
    DataStreams,
}

/// Records per call, both services.
const MAX_RECORDS: usize = 500;

impl Service {
    /// The SigV4 signing name, also the endpoint's first label.
    fn signing_name(self) -> &'static str {
        match self {
            Service::Firehose => "firehose",
            Service::DataStreams => "kinesis",
        }
    }

    fn put_target(self) -> &'static str {
        match self {
            Service::Firehose => "Firehose_20150804.PutRecordBatch",
            Service::DataStreams => "Kinesis_20131202.PutRecords",
        }
    }

    fn list_target(self) -> &'static str {
        match self {
            Service::Firehose => "Firehose_20150804.ListDeliveryStreams",
            Service::DataStreams => "Kinesis_20131202.ListStreams",
        }
    }

    /// The largest record: Firehose counts the data (1,000 KiB), Data
    /// Streams the data and the partition key (1 MiB); both before base64.
    fn max_record(self) -> usize {
        match self {
            Service::Firehose => 1_024_000,
            Service::DataStreams => 1024 * 1024,
        }
    }

    /// The largest call, counting base64 data and partition keys.
    fn max_call(self) -> usize {
        match self {
            Service::Firehose => 4 * 1024 * 1024,
            Service::DataStreams => 5 * 1024 * 1024,
        }
    }

    fn check_name(self, name: &str) -> Result<(), String> {
        match self {
            Service::Firehose => deskbus_event::names::check_firehose_stream(name),
            Service::DataStreams => deskbus_event::names::check_kinesis_stream(name),
        }
    }

    fn label(self) -> &'static str {
        match self {
            Service::Firehose => "firehose",
            Service::DataStreams => "kinesis",
        }
    }
}

pub(crate) struct KinesisStream {
    service: Service,
    config: KinesisConfig,
    client: Client,
}

/// One record of a call and the deliveries it carries (several when packed).
struct Record<'a> {
    data: Vec<u8>,
    /// Data Streams only.
    partition_key: Option<&'a str>,
    members: Vec<usize>,
}

impl Record<'_> {
    /// What the record weighs in a call's size limit.
    fn call_size(&self) -> usize {
        base64_len(self.data.len()) + self.partition_key.map_or(0, str::len)
    }
}

/// `PutRecordBatch` and `PutRecords` answers, which differ only in names.
#[derive(Deserialize)]
struct PutAnswer {
    #[serde(rename = "FailedPutCount", alias = "FailedRecordCount", default)]
    failed: u64,
    #[serde(rename = "RequestResponses", alias = "Records", default)]
    entries: Vec<PutEntry>,
}

#[derive(Deserialize)]
struct PutEntry {
    #[serde(rename = "ErrorCode")]
    error_code: Option<String>,
    #[serde(rename = "ErrorMessage")]
    error_message: Option<String>,
}

impl KinesisStream {
    pub(crate) fn new(service: Service, config: KinesisConfig) -> Result<KinesisStream, String> {
        let credentials = resolve_credentials(&config, &|name| std::env::var(name).ok())?;
        let endpoint = match &config.endpoint {
            Some(endpoint) => endpoint.clone(),
            None => default_endpoint(service, &config.region),
        };
        let client = Client::new(
            &endpoint,
            &config.region,
            service.signing_name(),
            credentials,
            config.timeout,
        )?;
        Ok(KinesisStream {
            service,
            config,
            client,
        })
    }

    /// The record bytes of one delivery: Firehose records end with a newline.
    fn record_data(&self, payload: &[u8], out: &mut Vec<u8>) {
        out.extend_from_slice(payload);
        if self.service == Service::Firehose && payload.last() != Some(&b'\n') {
            out.push(b'\n');
        }
    }

    fn record_size(&self, delivery: &Delivery<'_>) -> usize {
        match self.service {
            Service::Firehose => {
                delivery.payload.len() + usize::from(delivery.payload.last() != Some(&b'\n'))
            }
            Service::DataStreams => delivery.payload.len() + delivery.order_key.len(),
        }
    }

    /// The records for `members` of `batch` (all of one queue, all valid).
    fn records<'a>(&self, batch: &'a [Delivery<'a>], members: &[usize]) -> Vec<Record<'a>> {
        let mut records: Vec<Record<'a>> = Vec::new();
        for &i in members {
            let delivery = &batch[i];
            if self.config.pack
                && let Some(last) = records.last_mut()
                && last.data.len() + self.record_size(delivery) <= self.service.max_record()
            {
                self.record_data(&delivery.payload, &mut last.data);
                last.members.push(i);
                continue;
            }
            let mut data = Vec::with_capacity(delivery.payload.len() + 1);
            self.record_data(&delivery.payload, &mut data);
            records.push(Record {
                data,
                partition_key: match self.service {
                    Service::Firehose => None,
                    Service::DataStreams => Some(delivery.order_key),
                },
                members: vec![i],
            });
        }
        records
    }

    /// Splits `records` into calls within the record and size limits.
    fn calls(&self, records: &[Record<'_>]) -> Vec<Range<usize>> {
        let mut calls = Vec::new();
        let (mut start, mut size) = (0, 0);
        for (i, record) in records.iter().enumerate() {
            let weight = record.call_size();
            if i > start && (i - start == MAX_RECORDS || size + weight > self.service.max_call()) {
                calls.push(start..i);
                (start, size) = (i, 0);
            }
            size += weight;
        }
        if start < records.len() {
            calls.push(start..records.len());
        }
        calls
    }

    fn body(&self, queue: &str, records: &[Record<'_>]) -> Vec<u8> {
        let size: usize = records.iter().map(|r| r.call_size() + 40).sum();
        let mut body = Vec::with_capacity(size + 64);
        // Queue names and partition keys are JSON-escaped; base64 needs none.
        let name = serde_json::Value::from(queue).to_string();
        match self.service {
            Service::Firehose => body.extend_from_slice(b"{\"DeliveryStreamName\":"),
            Service::DataStreams => body.extend_from_slice(b"{\"StreamName\":"),
        }
        body.extend_from_slice(name.as_bytes());
        body.extend_from_slice(b",\"Records\":[");
        for (n, record) in records.iter().enumerate() {
            if n > 0 {
                body.push(b',');
            }
            body.extend_from_slice(b"{\"Data\":\"");
            base64_encode(&record.data, &mut body);
            body.push(b'"');
            if let Some(key) = record.partition_key {
                body.extend_from_slice(b",\"PartitionKey\":");
                body.extend_from_slice(serde_json::Value::from(key).to_string().as_bytes());
            }
            body.push(b'}');
        }
        body.extend_from_slice(b"]}");
        body
    }

    /// One call for `records`; a per-record outcome for each.
    async fn put_once(
        &self,
        queue: &str,
        records: &[Record<'_>],
    ) -> Result<Vec<Result<(), DeliveryError>>, CallError> {
        let answer = self
            .client
            .call(self.service.put_target(), self.body(queue, records))
            .await?;
        Ok(self.outcomes(queue, &answer, records.len()))
    }

    /// One call for `records`; when AWS refuses the call's contents as
    /// invalid, each record alone, so only the poison ones go to dead letters.
    async fn put(&self, queue: &str, records: &[Record<'_>]) -> Vec<Result<(), DeliveryError>> {
        match self.put_once(queue, records).await {
            Ok(outcomes) => outcomes,
            Err(error) if error.is_invalid_request() && records.len() > 1 => {
                let mut outcomes = Vec::with_capacity(records.len());
                for record in records {
                    let one = std::slice::from_ref(record);
                    match self.put_once(queue, one).await {
                        Ok(mut outcome) => outcomes.push(outcome.remove(0)),
                        Err(error) => outcomes.push(Err(self.classify(&error))),
                    }
                }
                outcomes
            }
            Err(error) => all_failed(records.len(), self.classify(&error)),
        }
    }

    fn classify(&self, error: &CallError) -> DeliveryError {
        let reason = format!("{}: {}", self.service.label(), error_chain(error));
        match error.is_retryable() {
            true => DeliveryError::retryable(reason),
            false => DeliveryError::permanent(reason),
        }
    }

    /// Per-record outcomes from a 2xx answer to a put of `len` records.
    fn outcomes(&self, queue: &str, answer: &[u8], len: usize) -> Vec<Result<(), DeliveryError>> {
        let answer: PutAnswer = match serde_json::from_slice(answer) {
            Ok(answer) => answer,
            // Accepted, but what was stored is unknown: put again (at least once).
            Err(e) => {
                return all_failed(
                    len,
                    DeliveryError::retryable(format!(
                        "{}: cannot read the answer to {}: {e}",
                        self.service.label(),
                        self.service.put_target()
                    )),
                );
            }
        };
        // An answer that lists no result per record (a proxy's `{}`) has
        // not confirmed anything.
        if answer.entries.len() != len {
            return all_failed(
                len,
                DeliveryError::retryable(format!(
                    "{}: {} records failed and the answer lists {} results for {len} records",
                    self.service.label(),
                    answer.failed,
                    answer.entries.len()
                )),
            );
        }
        // Each record's own error code says whether it was stored; the
        // count is only checked against them. A count of failures that
        // names no record cannot say which were stored: put all again.
        let refused = answer
            .entries
            .iter()
            .filter(|e| e.error_code.is_some())
            .count();
        if refused == 0 && answer.failed == 0 {
            return vec![Ok(()); len];
        }
        if refused == 0 {
            return all_failed(
                len,
                DeliveryError::retryable(format!(
                    "{}: the answer counts {} failed records but names none",
                    self.service.label(),
                    answer.failed
                )),
            );
        }
        tracing::debug!(
            service = self.service.label(),
            queue,
            failed = answer.failed,
            records = len,
            "some records were refused; only those will be put again"
        );
        answer
            .entries
            .into_iter()
            .map(|entry| match entry.error_code {
                None => Ok(()),
                Some(code) => {
                    let reason = format!(
                        "{} refused the record: {code}: {}",
                        self.service.label(),
                        entry.error_message.unwrap_or_default()
                    );
                    match retryable_code(&code) {
                        true => Err(DeliveryError::retryable(reason)),
                        false => Err(DeliveryError::permanent(reason)),
                    }
                }
            })
            .collect()
    }
}

impl Stream for KinesisStream {
    fn deliver<'a>(
        &'a self,
        batch: &'a [Delivery<'a>],
    ) -> BoxFuture<'a, Vec<Result<(), DeliveryError>>> {
        Box::pin(async move {
            let mut results: Vec<Result<(), DeliveryError>> = vec![Ok(()); batch.len()];
            let mut by_queue: IndexMap<&str, Vec<usize>> = IndexMap::new();
            for (i, delivery) in batch.iter().enumerate() {
                if let Err(reason) = self.service.check_name(&delivery.queue) {
                    results[i] = Err(DeliveryError::permanent(reason));
                    continue;
                }
                let size = self.record_size(delivery);
                if size > self.service.max_record() {
                    results[i] = Err(DeliveryError::permanent(format!(
                        "{size} bytes is larger than a {} record ({} bytes at most{})",
                        self.service.label(),
                        self.service.max_record(),
                        match self.service {
                            Service::Firehose => ", newline included",
                            Service::DataStreams => ", partition key included",
                        }
                    )));
                    continue;
                }
                if self.service == Service::DataStreams
                    && !(1..=256).contains(&delivery.order_key.chars().count())
                {
                    results[i] = Err(DeliveryError::permanent(format!(
                        "order key {:?} cannot be a partition key (1 to 256 characters)",
                        delivery.order_key
                    )));
                    continue;
                }
                by_queue.entry(&delivery.queue).or_default().push(i);
            }
            // Sequential calls: the dispatcher already runs `concurrency`
            // batches at once.
            for (queue, members) in by_queue {
                let records = self.records(batch, &members);
                for call in self.calls(&records) {
                    let records = &records[call];
                    let outcomes = self.put(queue, records).await;
                    for (record, outcome) in records.iter().zip(outcomes) {
                        for &i in &record.members {
                            results[i] = outcome.clone();
                        }
                    }
                }
            }
            results
        })
    }

    fn healthcheck(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            self.client
                .call(self.service.list_target(), b"{\"Limit\":1}".to_vec())
                .await
                .map(|_| ())
                .map_err(|e| error_chain(&e))
        })
    }
}

/// Static credentials; `provider` says where they came from.
fn credentials(
    id: impl Into<String>,
    secret: impl Into<String>,
    token: Option<String>,
) -> Credentials {
    Credentials::new(id, secret, token, None, "deskbus")
}

fn default_endpoint(service: Service, region: &str) -> String {
    let domain = match region.starts_with("cn-") {
        true => "amazonaws.com.cn",
        false => "amazonaws.com",
    };
    format!("https://{}.{region}.{domain}/", service.signing_name())
}

/// Credentials from the config, else the environment, else the profile
/// file (see [`KinesisConfig`]).
fn resolve_credentials(
    config: &KinesisConfig,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Credentials, String> {
    if let (Some(id), Some(secret)) = (&config.access_key_id, &config.secret_access_key) {
        return Ok(credentials(
            id,
            secret.expose(),
            config.session_token.as_ref().map(|t| t.expose().to_owned()),
        ));
    }
    let var = |name: &str| env(name).filter(|v| !v.is_empty());
    if let (Some(id), Some(secret)) = (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
        return Ok(credentials(id, secret, var("AWS_SESSION_TOKEN")));
    }
    let path = match (var("AWS_SHARED_CREDENTIALS_FILE"), var("HOME")) {
        (Some(path), _) => PathBuf::from(path),
        (None, Some(home)) => PathBuf::from(home).join(".aws").join("credentials"),
        (None, None) => {
            return Err(
                "no aws credentials: set `access_key_id` and `secret_access_key`, \
                        or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (HOME is unset, so \
                        there is no ~/.aws/credentials)"
                    .to_owned(),
            );
        }
    };
    let text = std::fs::read_to_string(&path).map_err(|e| {
        format!(
            "no aws credentials: set `access_key_id` and `secret_access_key`, or \
             AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or a profile in {}: {e}",
            path.display()
        )
    })?;
    let section = profile_section(&text, &config.profile);
    match (
        section.get("aws_access_key_id"),
        section.get("aws_secret_access_key"),
    ) {
        (Some(id), Some(secret)) => Ok(credentials(
            id.as_str(),
            secret.as_str(),
            section.get("aws_session_token").cloned(),
        )),
        _ => Err(format!(
            "no aws credentials: profile {:?} in {} has no aws_access_key_id and \
             aws_secret_access_key",
            config.profile,
            path.display()
        )),
    }
}

/// The keys of `[profile]` in an AWS shared credentials file (INI).
fn profile_section(text: &str, profile: &str) -> IndexMap<String, String> {
    let mut keys = IndexMap::new();
    let mut inside = false;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let name = name.trim();
            inside =
                name == profile || name.strip_prefix("profile ").map(str::trim) == Some(profile);
            continue;
        }
        if inside && let Some((key, value)) = line.split_once('=') {
            keys.insert(key.trim().to_ascii_lowercase(), value.trim().to_owned());
        }
    }
    keys
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::Secret;

    fn config(pack: bool) -> KinesisConfig {
        KinesisConfig {
            region: "us-east-1".into(),
            endpoint: Some("http://127.0.0.1:1/".into()),
            access_key_id: Some("AKID".into()),
            secret_access_key: Some(Secret::new("secret".into())),
            session_token: None,
            profile: "default".into(),
            pack,
            timeout: Duration::from_secs(5),
        }
    }

    #[test]
    fn calls_stay_within_500_records_and_the_size_limit() {
        let stream = KinesisStream::new(Service::Firehose, config(false)).unwrap();
        let batch: Vec<Delivery> = (0..1200).map(|_| Delivery::for_test("s", b"{}")).collect();
        let members: Vec<usize> = (0..batch.len()).collect();
        let records = stream.records(&batch, &members);
        assert_eq!(records[0].data, b"{}\n");
        let calls = stream.calls(&records);
        assert_eq!(calls, vec![0..500, 500..1000, 1000..1200]);

        // 900,000-byte payloads: base64 makes each 1.2 MB, so 3 fit in 4 MiB.
        let big = vec![b'x'; 900_000];
        let batch: Vec<Delivery> = (0..7).map(|_| Delivery::for_test("s", &big)).collect();
        let records = stream.records(&batch, &(0..7).collect::<Vec<_>>());
        let calls = stream.calls(&records);
        assert_eq!(calls, vec![0..3, 3..6, 6..7]);
        for call in calls {
            let size: usize = records[call].iter().map(Record::call_size).sum();
            assert!(size <= 4 * 1024 * 1024, "{size}");
        }
    }

    #[test]
    fn packing_joins_small_events_of_one_stream_with_newlines() {
        let stream = KinesisStream::new(Service::Firehose, config(true)).unwrap();
        let small: Vec<String> = (0..3).map(|i| format!("{{\"n\":{i}}}")).collect();
        let big = vec![b'y'; 1_023_990];
        let mut batch: Vec<Delivery> = small
            .iter()
            .map(|s| Delivery::for_test("s", s.as_bytes()))
            .collect();
        batch.push(Delivery::for_test("s", &big));
        let records = stream.records(&batch, &[0, 1, 2, 3]);
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].data, b"{\"n\":0}\n{\"n\":1}\n{\"n\":2}\n");
        assert_eq!(records[0].members, vec![0, 1, 2]);
        assert_eq!(records[1].members, vec![3]);
    }

    #[test]
    fn data_streams_records_are_the_payload_keyed_by_order_key() {
        let stream = KinesisStream::new(Service::DataStreams, config(false)).unwrap();
        let batch = vec![Delivery::for_test("s", b"{\"a\":1}")];
        let records = stream.records(&batch, &[0]);
        assert_eq!(records[0].data, b"{\"a\":1}");
        assert_eq!(records[0].partition_key, Some(batch[0].order_key));
        let body: serde_json::Value = serde_json::from_slice(&stream.body("s", &records)).unwrap();
        assert_eq!(body["StreamName"], "s");
        assert_eq!(body["Records"][0]["Data"], "eyJhIjoxfQ==");
        assert_eq!(body["Records"][0]["PartitionKey"], batch[0].order_key);
    }

    #[test]
    fn refused_records_are_retried_or_dead_lettered_by_code() {
        let stream = KinesisStream::new(Service::Firehose, config(false)).unwrap();
        let answer = br#"{"FailedPutCount":2,"Encrypted":false,"RequestResponses":[
            {"RecordId":"a"},
            {"ErrorCode":"ServiceUnavailableException","ErrorMessage":"slow down"},
            {"ErrorCode":"InvalidArgumentException","ErrorMessage":"bad"}]}"#;
        let outcomes = stream.outcomes("s", answer, 3);
        assert_eq!(outcomes[0], Ok(()));
        assert!(
            matches!(&outcomes[1], Err(DeliveryError::Retryable { reason, .. }) if reason.contains("ServiceUnavailableException: slow down"))
        );
        assert!(
            matches!(&outcomes[2], Err(DeliveryError::Permanent { reason }) if reason.contains("InvalidArgumentException"))
        );
        // Data Streams names.
        let answer = br#"{"FailedRecordCount":1,"Records":[
            {"ErrorCode":"ProvisionedThroughputExceededException","ErrorMessage":"x"},
            {"SequenceNumber":"1","ShardId":"shardId-000000000000"}]}"#;
        let outcomes = stream.outcomes("s", answer, 2);
        assert!(matches!(&outcomes[0], Err(DeliveryError::Retryable { .. })));
        assert_eq!(outcomes[1], Ok(()));
        // A count without the list: what was stored is unknown.
        let outcomes = stream.outcomes("s", br#"{"FailedPutCount":1}"#, 2);
        assert!(
            outcomes
                .iter()
                .all(|o| matches!(o, Err(DeliveryError::Retryable { .. })))
        );
        // Nothing failed, but no result per record either (a proxy's
        // answer, not AWS's): nothing is confirmed, so all is retried.
        let outcomes = stream.outcomes("s", br#"{"FailedPutCount":0}"#, 2);
        assert!(
            outcomes
                .iter()
                .all(|o| matches!(o, Err(DeliveryError::Retryable { .. })))
        );
    }

    /// The records' own error codes decide, not the count beside them: a
    /// count of 0 (or none) with a refused record must not confirm it, and
    /// a count that names no record confirms nothing.
    #[test]
    fn a_refused_record_is_not_confirmed_whatever_the_count_says() {
        let stream = KinesisStream::new(Service::DataStreams, config(false)).unwrap();
        for answer in [
            &br#"{"FailedRecordCount":0,"Records":[{"SequenceNumber":"1"},{"ErrorCode":"InternalFailure","ErrorMessage":"x"}]}"#[..],
            br#"{"Records":[{"SequenceNumber":"1"},{"ErrorCode":"InternalFailure","ErrorMessage":"x"}]}"#,
        ] {
            let outcomes = stream.outcomes("s", answer, 2);
            assert_eq!(outcomes[0], Ok(()));
            assert!(
                matches!(&outcomes[1], Err(DeliveryError::Retryable { reason, .. }) if reason.contains("InternalFailure")),
                "{outcomes:?}"
            );
        }
        let answer =
            br#"{"FailedRecordCount":1,"Records":[{"SequenceNumber":"1"},{"SequenceNumber":"2"}]}"#;
        let outcomes = stream.outcomes("s", answer, 2);
        assert!(
            outcomes.iter().all(
                |o| matches!(o, Err(DeliveryError::Retryable { reason, .. }) if reason.contains("names none"))
            ),
            "{outcomes:?}"
        );
    }

    /// The partition key is the order key: one that Data Streams cannot
    /// take (empty, over 256 characters) is refused here with its name,
    /// and it counts in the record's size.
    #[tokio::test]
    async fn an_order_key_that_cannot_be_a_partition_key_is_permanent() {
        let stream = KinesisStream::new(Service::DataStreams, config(false)).unwrap();
        let long = "k".repeat(257);
        let batch = [
            Delivery {
                order_key: "",
                ..Delivery::for_test("s", b"1")
            },
            Delivery {
                order_key: &long,
                ..Delivery::for_test("s", b"2")
            },
        ];
        let results = stream.deliver(&batch).await;
        for result in &results {
            assert!(
                matches!(result, Err(DeliveryError::Permanent { reason }) if reason.starts_with("order key")),
                "{results:?}"
            );
        }
        let near_limit = vec![b'x'; 1024 * 1024 - 8];
        let keyed = Delivery {
            order_key: "ticket:12",
            ..Delivery::for_test("s", &near_limit)
        };
        assert_eq!(stream.record_size(&keyed), 1024 * 1024 + 1);
    }

    #[tokio::test]
    async fn bad_names_and_oversized_payloads_are_permanent_and_an_unreachable_endpoint_retryable()
    {
        let stream = KinesisStream::new(Service::Firehose, config(false)).unwrap();
        let results = stream
            .deliver(&[
                Delivery::for_test("no spaces", b"1"),
                Delivery::for_test("s", &vec![b'x'; 1_024_000]),
                Delivery::for_test("s", b"2"),
            ])
            .await;
        assert!(
            matches!(&results[0], Err(DeliveryError::Permanent { reason }) if reason.contains("no spaces")),
            "{results:?}"
        );
        assert!(
            matches!(&results[1], Err(DeliveryError::Permanent { reason }) if reason.contains("1024001 bytes is larger")),
            "{results:?}"
        );
        assert!(
            matches!(&results[2], Err(DeliveryError::Retryable { reason, .. }) if reason.contains("cannot reach http://127.0.0.1:1/")),
            "{results:?}"
        );
        assert!(stream.healthcheck().await.is_err());
    }

    #[test]
    fn credentials_come_from_config_then_environment_then_profile() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("credentials");
        std::fs::write(
            &file,
            "[default]\naws_access_key_id = AKIDDEFAULT\naws_secret_access_key = s1\n\n\
             [ops]\naws_access_key_id=AKIDOPS\naws_secret_access_key=s2\naws_session_token=t2\n",
        )
        .unwrap();
        let file = file.display().to_string();
        let mut c = config(false);
        let env_full = |name: &str| match name {
            "AWS_ACCESS_KEY_ID" => Some("AKIDENV".to_owned()),
            "AWS_SECRET_ACCESS_KEY" => Some("s0".to_owned()),
            "AWS_SHARED_CREDENTIALS_FILE" => Some(file.clone()),
            _ => None,
        };
        let env_file = |name: &str| match name {
            "AWS_SHARED_CREDENTIALS_FILE" => Some(file.clone()),
            _ => None,
        };
        assert_eq!(
            resolve_credentials(&c, &env_full).unwrap().access_key_id(),
            "AKID"
        );
        c.access_key_id = None;
        c.secret_access_key = None;
        assert_eq!(
            resolve_credentials(&c, &env_full).unwrap().access_key_id(),
            "AKIDENV"
        );
        let creds = resolve_credentials(&c, &env_file).unwrap();
        assert_eq!(creds.access_key_id(), "AKIDDEFAULT");
        assert_eq!(creds.session_token(), None);
        c.profile = "ops".into();
        let creds = resolve_credentials(&c, &env_file).unwrap();
        assert_eq!(
            (creds.access_key_id(), creds.secret_access_key()),
            ("AKIDOPS", "s2")
        );
        assert_eq!(creds.session_token(), Some("t2"));
        c.profile = "missing".into();
        let error = resolve_credentials(&c, &env_file).unwrap_err();
        assert!(error.contains("profile \"missing\""), "{error}");
        let error = resolve_credentials(&c, &|_| None).unwrap_err();
        assert!(error.starts_with("no aws credentials"), "{error}");
    }

    #[test]
    fn default_endpoints_follow_the_region() {
        assert_eq!(
            default_endpoint(Service::Firehose, "eu-west-1"),
            "https://firehose.eu-west-1.amazonaws.com/"
        );
        assert_eq!(
            default_endpoint(Service::DataStreams, "cn-north-1"),
            "https://kinesis.cn-north-1.amazonaws.com.cn/"
        );
    }
}
