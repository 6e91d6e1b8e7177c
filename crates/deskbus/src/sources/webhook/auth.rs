//! Webhook authentication: bearer tokens and HMAC-SHA256 body signatures,
//! both compared in constant time.

use axum::http::HeaderMap;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::config::WebhookAuth;

#[derive(Debug, PartialEq, Eq)]
pub(super) enum AuthError {
    /// No credentials: 401.
    Missing(&'static str),
    /// Wrong credentials: 403.
    Invalid(&'static str),
}

/// Checks the request's credentials. Without its `body` (`None`), all that
/// can be checked before the body is read: a bearer token whole, and an
/// HMAC signature's headers (present, hex, a fresh timestamp), so that a
/// request refused on those costs no body read.
pub(super) fn check(
    auth: &WebhookAuth,
    headers: &HeaderMap,
    body: Option<&[u8]>,
    now_unix: i64,
) -> Result<(), AuthError> {
    match auth {
        WebhookAuth::Bearer(token) => {
            let value = headers
                .get(axum::http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .ok_or(AuthError::Missing("missing Authorization header"))?;
            // The scheme's name is case-insensitive (RFC 9110 §11.1).
            let given = value
                .split_once(' ')
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                .map(|(_, token)| token.trim_start())
                .ok_or(AuthError::Missing(
                    "Authorization header is not a Bearer token",
                ))?;
            // Digests of equal length, compared in constant time: comparing
            // the tokens themselves would end early on a length mismatch and
            // tell the token's length.
            let digest = |text: &str| <Sha256 as sha2::Digest>::digest(text.as_bytes());
            match bool::from(digest(given).ct_eq(&digest(token.expose()))) {
                true => Ok(()),
                false => Err(AuthError::Invalid("invalid bearer token")),
            }
        }
        WebhookAuth::Hmac {
            secret,
            header,
            timestamp_header,
            timestamp_tolerance,
        } => {
            let signature = headers
                .get(header.as_str())
                .and_then(|v| v.to_str().ok())
                .ok_or(AuthError::Missing("missing signature header"))?;
            let signature = signature.trim();
            let signature = signature.strip_prefix("sha256=").unwrap_or(signature);
            let given =
                hex::decode(signature).map_err(|_| AuthError::Invalid("signature is not hex"))?;
            let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes())
                .map_err(|_| AuthError::Invalid("unusable HMAC secret"))?;
            let mut signed_stamp = None;
            if let Some(tolerance) = timestamp_tolerance {
                let stamp = headers
                    .get(timestamp_header.as_str())
                    .and_then(|v| v.to_str().ok())
                    .ok_or(AuthError::Missing("missing timestamp header"))?;
                let seconds: i64 = stamp
                    .trim()
                    .parse()
                    .map_err(|_| AuthError::Invalid("timestamp is not unix seconds"))?;
                let skew = now_unix
                    .checked_sub(seconds)
                    .map_or(u64::MAX, i64::unsigned_abs);
                if skew > tolerance.as_secs() {
                    return Err(AuthError::Invalid(
                        "timestamp outside the allowed tolerance",
                    ));
                }
                signed_stamp = Some(stamp.trim());
            }
            let Some(body) = body else {
                return Ok(()); // the signature itself is checked with the body
            };
            if let Some(stamp) = signed_stamp {
                mac.update(stamp.as_bytes());
                mac.update(b".");
            }
            mac.update(body);
            // `verify_slice` compares in constant time.
            mac.verify_slice(&given)
                .map_err(|_| AuthError::Invalid("signature does not match the body"))
        }
    }
}

/// The hex signature a sender computes; used by tests and documentation.
pub fn sign(secret: &[u8], timestamp: Option<&str>, body: &[u8]) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return String::new();
    };
    if let Some(stamp) = timestamp {
        mac.update(stamp.as_bytes());
        mac.update(b".");
    }
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::Secret;

    fn headers(pairs: &[(&'static str, String)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn bearer() {
        let auth = WebhookAuth::Bearer(Secret::new("tok".into()));
        assert_eq!(
            check(
                &auth,
                &headers(&[("authorization", "Bearer tok".into())]),
                Some(b""),
                0
            ),
            Ok(())
        );
        assert!(matches!(
            check(&auth, &headers(&[]), Some(b""), 0),
            Err(AuthError::Missing(_))
        ));
        assert!(matches!(
            check(
                &auth,
                &headers(&[("authorization", "Bearer nope".into())]),
                Some(b""),
                0
            ),
            Err(AuthError::Invalid(_))
        ));
        assert!(matches!(
            check(
                &auth,
                &headers(&[("authorization", "Basic x".into())]),
                Some(b""),
                0
            ),
            Err(AuthError::Missing(_))
        ));
        // The scheme's name in any case; a token longer or shorter than
        // the right one is as wrong as any other.
        assert_eq!(
            check(
                &auth,
                &headers(&[("authorization", "bearer tok".into())]),
                Some(b""),
                0
            ),
            Ok(())
        );
        for wrong in ["Bearer to", "Bearer tokk", "Bearer "] {
            assert!(
                matches!(
                    check(
                        &auth,
                        &headers(&[("authorization", wrong.into())]),
                        Some(b""),
                        0
                    ),
                    Err(AuthError::Invalid(_))
                ),
                "{wrong}"
            );
        }
    }

    #[test]
    fn hmac_with_and_without_timestamp() {
        let plain = WebhookAuth::Hmac {
            secret: Secret::new("k".into()),
            header: "X-Sig".into(),
            timestamp_header: "X-Ts".into(),
            timestamp_tolerance: None,
        };
        let sig = sign(b"k", None, b"body");
        assert_eq!(
            check(
                &plain,
                &headers(&[("x-sig", sig.clone())]),
                Some(b"body"),
                0
            ),
            Ok(())
        );
        assert_eq!(
            check(
                &plain,
                &headers(&[("x-sig", format!("sha256={sig}"))]),
                Some(b"body"),
                0
            ),
            Ok(())
        );
        assert!(matches!(
            check(&plain, &headers(&[("x-sig", sig)]), Some(b"bodx"), 0),
            Err(AuthError::Invalid(_))
        ));
        assert!(matches!(
            check(&plain, &headers(&[]), Some(b"body"), 0),
            Err(AuthError::Missing(_))
        ));

        let timed = WebhookAuth::Hmac {
            secret: Secret::new("k".into()),
            header: "X-Sig".into(),
            timestamp_header: "X-Ts".into(),
            timestamp_tolerance: Some(Duration::from_secs(300)),
        };
        let sig = sign(b"k", Some("1000"), b"body");
        let h = headers(&[("x-sig", sig), ("x-ts", "1000".into())]);
        assert_eq!(check(&timed, &h, Some(b"body"), 1200), Ok(()));
        assert!(
            matches!(
                check(&timed, &h, Some(b"body"), 1400),
                Err(AuthError::Invalid(_))
            ),
            "replay outside tolerance"
        );
        // Before the body is read: the headers alone are checked, and a
        // request they condemn is refused without reading it.
        assert_eq!(check(&timed, &h, None, 1200), Ok(()));
        assert!(matches!(
            check(&timed, &h, None, 1400),
            Err(AuthError::Invalid(_))
        ));
        assert!(matches!(
            check(&timed, &headers(&[("x-sig", "zz".into())]), None, 1200),
            Err(AuthError::Invalid(_))
        ));
        assert!(matches!(
            check(&plain, &headers(&[]), None, 0),
            Err(AuthError::Missing(_))
        ));
    }
}
