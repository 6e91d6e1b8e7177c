//! One signed AWS JSON 1.1 call, and what its answer means.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;

use crate::url::redact_url;

pub(super) const CONTENT_TYPE: &str = "application/x-amz-json-1.1";

/// Why a call failed as a whole.
#[derive(Debug, thiserror::Error)]
pub(super) enum CallError {
    #[error("cannot sign the request")]
    Sign(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("cannot reach {endpoint}")]
    Transport {
        endpoint: String,
        #[source]
        source: reqwest::Error,
    },
    /// A non-2xx answer; `code` is AWS's error code when the body had one.
    #[error("{target} answered http {status}: {code}: {message}")]
    Api {
        target: &'static str,
        status: u16,
        code: String,
        message: String,
    },
}

impl CallError {
    /// Whether the same call may succeed later.
    pub(super) fn is_retryable(&self) -> bool {
        match self {
            CallError::Sign(_) => false,
            CallError::Transport { .. } => true,
            CallError::Api { status, code, .. } => {
                *status >= 500 || *status == 429 || *status == 408 || retryable_code(code)
            }
        }
    }

    /// A refusal of the request's contents (not of the stream or the
    /// credentials): one of its records may be the cause. A 413 (a proxy
    /// in front of the endpoint that takes smaller bodies) counts too.
    pub(super) fn is_invalid_request(&self) -> bool {
        matches!(self, CallError::Api { status, code, .. } if *status == 413 || matches!(
            code.as_str(),
            "InvalidArgumentException" | "ValidationException" | "SerializationException"
        ))
    }
}

/// AWS error codes, per record or per call, that say "try again later".
pub(super) fn retryable_code(code: &str) -> bool {
    matches!(
        code,
        "ServiceUnavailableException"
            | "ServiceUnavailable"
            | "ThrottlingException"
            | "Throttling"
            | "ThrottledException"
            | "TooManyRequestsException"
            | "RequestLimitExceeded"
            | "ProvisionedThroughputExceededException"
            | "LimitExceededException"
            | "KMSThrottlingException"
            | "InternalFailure"
            | "InternalServerError"
            | "InternalError"
            | "RequestTimeout"
            | "RequestTimeoutException"
            // The request's date is too far from AWS's clock: the next
            // attempt is signed anew.
            | "RequestExpired"
            | "InvalidSignatureException"
            // Credentials that expired or lack a permission: an operator can
            // fix them while the events wait (bounded by `retry.max_attempts`
            // and `retry.max_age`), rather than dead-letter everything.
            | "ExpiredTokenException"
            | "ExpiredToken"
            | "UnrecognizedClientException"
            | "AccessDeniedException"
            | "KMSAccessDeniedException"
            // The same refusals in the XML of moto and of query-protocol
            // endpoints: a key the endpoint does not know, a signature made
            // with the wrong secret.
            | "InvalidClientTokenId"
            | "SignatureDoesNotMatch"
            | "IncompleteSignature"
            | "MissingAuthenticationToken"
            | "AccessDenied"
    )
}

pub(super) struct Client {
    http: reqwest::Client,
    endpoint: reqwest::Url,
    region: String,
    signing_name: &'static str,
    credentials: Credentials,
}

impl Client {
    pub(super) fn new(
        endpoint: &str,
        region: &str,
        signing_name: &'static str,
        credentials: Credentials,
        timeout: Duration,
    ) -> Result<Client, String> {
        // reqwest is built without a crypto provider so that ring is the only
        // one in the graph; install it (idempotent) before the first client.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let endpoint = reqwest::Url::parse(endpoint)
            .map_err(|e| format!("endpoint {:?}: {e}", redact_url(endpoint)))?;
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .user_agent(concat!("deskbus/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build http client: {e}"))?;
        Ok(Client {
            http,
            endpoint,
            region: region.to_owned(),
            signing_name,
            credentials,
        })
    }

    /// The endpoint, without any user info, for messages.
    pub(super) fn endpoint(&self) -> String {
        redact_url(self.endpoint.as_str())
    }

    /// POSTs `body` as the JSON 1.1 operation `target`, signed; the body of
    /// a 2xx answer.
    pub(super) async fn call(
        &self,
        target: &'static str,
        body: Vec<u8>,
    ) -> Result<Vec<u8>, CallError> {
        let signed = sign_headers(
            &self.credentials,
            &self.region,
            self.signing_name,
            SystemTime::now(),
            "POST",
            self.endpoint.as_str(),
            &[("content-type", CONTENT_TYPE), ("x-amz-target", target)],
            &body,
        )
        .map_err(CallError::Sign)?;
        let mut request = self
            .http
            .post(self.endpoint.clone())
            .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE)
            .header("x-amz-target", target);
        for (name, value) in signed {
            request = request.header(name, value);
        }
        let transport = |source| CallError::Transport {
            endpoint: self.endpoint(),
            source,
        };
        let response = request.body(body).send().await.map_err(transport)?;
        let status = response.status();
        let header_code = response
            .headers()
            .get("x-amzn-errortype")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(':').next().unwrap_or(v).to_owned());
        let bytes = response.bytes().await.map_err(transport)?;
        if status.is_success() {
            return Ok(bytes.to_vec());
        }
        let (code, message) = error_code(header_code, &bytes);
        Err(CallError::Api {
            target,
            status: status.as_u16(),
            code,
            message,
        })
    }
}

/// AWS's error code and message from an error answer: JSON
/// `{"__type": "ns#Code", "message": …}` (AWS), XML `<Code>…</Code>`
/// `<Message>…</Message>` (moto's auth errors, query-protocol services),
/// or the `x-amzn-ErrorType` header.
pub(super) fn error_code(header_code: Option<String>, body: &[u8]) -> (String, String) {
    let text = String::from_utf8_lossy(body);
    let snippet = || text.trim().chars().take(200).collect::<String>();
    if let Ok(serde_json::Value::Object(map)) = serde_json::from_slice::<serde_json::Value>(body) {
        let code = map
            .get("__type")
            .or_else(|| map.get("code"))
            .or_else(|| map.get("Code"))
            .and_then(|c| c.as_str())
            .map(|c| c.rsplit('#').next().unwrap_or(c).to_owned());
        let message = map
            .get("message")
            .or_else(|| map.get("Message"))
            .and_then(|m| m.as_str())
            .map(str::to_owned);
        if let Some(code) = code.or(header_code.clone()) {
            return (code, message.unwrap_or_default());
        }
    }
    if let Some(code) = xml_element(&text, "Code") {
        let message = xml_element(&text, "Message").unwrap_or_default();
        return (code, message);
    }
    match header_code {
        Some(code) => (code, snippet()),
        None => ("unknown error".to_owned(), snippet()),
    }
}

/// The text of the first `<name>…</name>`, entities decoded.
fn xml_element(text: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let start = text.find(&open)? + open.len();
    let end = start + text[start..].find(&format!("</{name}>"))?;
    Some(
        text[start..end]
            .trim()
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&"),
    )
}

/// The headers that sign a request (`authorization`, `x-amz-date`, and
/// `x-amz-security-token` with temporary credentials). `headers` are the
/// request's other signed headers; `host` comes from `url`.
#[allow(clippy::too_many_arguments)]
pub(super) fn sign_headers(
    credentials: &Credentials,
    region: &str,
    service: &str,
    time: SystemTime,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Vec<(&'static str, String)>, Box<dyn std::error::Error + Send + Sync>> {
    let identity = credentials.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(time)
        .settings(SigningSettings::default())
        .build()?
        .into();
    let request = SignableRequest::new(
        method,
        url,
        headers.iter().copied(),
        SignableBody::Bytes(body),
    )?;
    let (instructions, _signature) = sign(request, &params)?.into_parts();
    let (signed, _params) = instructions.into_parts();
    Ok(signed
        .into_iter()
        .map(|h| (h.name(), h.value().to_owned()))
        .collect())
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// The length of `n` bytes in standard, padded base64.
pub(super) fn base64_len(n: usize) -> usize {
    n.div_ceil(3) * 4
}

/// Appends the standard, padded base64 of `data` to `out`.
pub(super) fn base64_encode(data: &[u8], out: &mut Vec<u8>) {
    out.reserve(base64_len(data.len()));
    let mut chunks = data.chunks_exact(3);
    for c in &mut chunks {
        let n = (u32::from(c[0]) << 16) | (u32::from(c[1]) << 8) | u32::from(c[2]);
        out.extend_from_slice(&[
            ALPHABET[(n >> 18) as usize & 63],
            ALPHABET[(n >> 12) as usize & 63],
            ALPHABET[(n >> 6) as usize & 63],
            ALPHABET[n as usize & 63],
        ]);
    }
    match chunks.remainder() {
        [a] => {
            let n = u32::from(*a) << 16;
            out.extend_from_slice(&[
                ALPHABET[(n >> 18) as usize & 63],
                ALPHABET[(n >> 12) as usize & 63],
                b'=',
                b'=',
            ]);
        }
        [a, b] => {
            let n = (u32::from(*a) << 16) | (u32::from(*b) << 8);
            out.extend_from_slice(&[
                ALPHABET[(n >> 18) as usize & 63],
                ALPHABET[(n >> 12) as usize & 63],
                ALPHABET[(n >> 6) as usize & 63],
                b'=',
            ]);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::streams::kinesis::credentials;
    use base64::Engine;

    fn at(stamp: &str) -> SystemTime {
        let ts: jiff::Timestamp = stamp.parse().unwrap();
        SystemTime::UNIX_EPOCH + Duration::from_secs(ts.as_second() as u64)
    }

    fn signature(headers: &[(&'static str, String)]) -> String {
        let auth = &headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("authorization"))
            .expect("an authorization header")
            .1;
        auth.rsplit("Signature=").next().unwrap().to_owned()
    }

    /// The reference's Firehose vector (shared/reference/kinesis-firehose.md).
    #[test]
    fn sigv4_matches_the_firehose_vector() {
        let creds = credentials("AKIDEXAMPLE", "testing", None);
        let headers = sign_headers(
            &creds,
            "us-east-1",
            "firehose",
            at("2026-11-23T14:40:14Z"),
            "POST",
            "https://firehose.us-east-1.amazonaws.com/",
            &[
                ("content-type", CONTENT_TYPE),
                ("x-amz-target", "Firehose_20150804.PutRecord"),
            ],
            br#"{"DeliveryStreamName":"deskbus-events","Record":{"Data":"aGVsbG8K"}}"#,
        )
        .unwrap();
        assert_eq!(
            signature(&headers),
            "958d7c00e14be943e14742305e6b8452b17c321c945e3ec3dce07a16a938ebfd"
        );
        let auth = &headers
            .iter()
            .find(|(n, _)| *n == "authorization")
            .unwrap()
            .1;
        assert!(
            auth.starts_with(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261123/us-east-1/firehose/aws4_request, \
                 SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature="
            ),
            "{auth}"
        );
        assert!(headers.contains(&("x-amz-date", "20261123T144014Z".to_owned())));
        assert!(!headers.iter().any(|(n, _)| *n == "x-amz-security-token"));
    }

    /// AWS's documented example (IAM ListUsers).
    #[test]
    fn sigv4_matches_the_aws_documentation_vector() {
        let creds = credentials(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            None,
        );
        let headers = sign_headers(
            &creds,
            "us-east-1",
            "iam",
            at("2015-08-30T12:36:00Z"),
            "GET",
            "https://iam.amazonaws.com/?Action=ListUsers&Version=2010-05-08",
            &[(
                "content-type",
                "application/x-www-form-urlencoded; charset=utf-8",
            )],
            b"",
        )
        .unwrap();
        assert_eq!(
            signature(&headers),
            "5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"
        );
    }

    #[test]
    fn temporary_credentials_send_their_token() {
        let creds = credentials("AKID", "secret", Some("token-1".into()));
        let headers = sign_headers(
            &creds,
            "eu-west-1",
            "kinesis",
            SystemTime::now(),
            "POST",
            "http://127.0.0.1:4566/",
            &[("content-type", CONTENT_TYPE)],
            b"{}",
        )
        .unwrap();
        assert!(headers.contains(&("x-amz-security-token", "token-1".to_owned())));
    }

    #[test]
    fn base64_matches_the_standard_engine() {
        let engine = base64::engine::general_purpose::STANDARD;
        for len in 0..70 {
            let data: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            let mut out = Vec::new();
            base64_encode(&data, &mut out);
            assert_eq!(String::from_utf8(out).unwrap(), engine.encode(&data));
            assert_eq!(base64_len(len), engine.encode(&data).len());
        }
    }

    #[test]
    fn error_codes_from_json_xml_and_headers() {
        let (code, message) = error_code(
            None,
            br#"{"__type":"com.amazonaws.firehose#ResourceNotFoundException","message":"no stream"}"#,
        );
        assert_eq!(
            (code.as_str(), message.as_str()),
            ("ResourceNotFoundException", "no stream")
        );
        let (code, message) = error_code(
            None,
            br#"{"__type":"ThrottlingException","Message":"slow down"}"#,
        );
        assert_eq!(
            (code.as_str(), message.as_str()),
            ("ThrottlingException", "slow down")
        );
        let xml = br#"<?xml version="1.0" encoding="UTF-8"?>
<ErrorResponse><Error><Type>Sender</Type><Code>InvalidClientTokenId</Code>
<Message>The security token included in the request is invalid.</Message></Error></ErrorResponse>"#;
        let (code, message) = error_code(None, xml);
        assert_eq!(code, "InvalidClientTokenId");
        assert_eq!(
            message,
            "The security token included in the request is invalid."
        );
        let (code, _) = error_code(Some("ServiceUnavailableException".into()), b"oops");
        assert_eq!(code, "ServiceUnavailableException");
        let (code, message) = error_code(None, b"<html>bad gateway</html>");
        assert_eq!(code, "unknown error");
        assert_eq!(message, "<html>bad gateway</html>");
    }

    #[test]
    fn throttling_and_server_faults_are_retryable() {
        let api = |status, code: &str| CallError::Api {
            target: "t",
            status,
            code: code.into(),
            message: String::new(),
        };
        assert!(api(400, "ThrottlingException").is_retryable());
        assert!(api(400, "ProvisionedThroughputExceededException").is_retryable());
        assert!(api(503, "ServiceUnavailableException").is_retryable());
        assert!(api(500, "unknown error").is_retryable());
        assert!(!api(400, "ResourceNotFoundException").is_retryable());
        // Bad credentials wait for an operator, whether the endpoint says
        // so in AWS's JSON or in moto's XML.
        assert!(api(400, "UnrecognizedClientException").is_retryable());
        assert!(api(403, "InvalidClientTokenId").is_retryable());
        assert!(api(403, "SignatureDoesNotMatch").is_retryable());
        assert!(api(400, "InvalidArgumentException").is_invalid_request());
        assert!(!api(400, "ResourceNotFoundException").is_invalid_request());
        assert!(api(413, "unknown error").is_invalid_request());
    }
}
