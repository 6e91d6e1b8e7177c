//! osTicket's ticket API: one POST per ticket, and the probe that proves a
//! key without creating a ticket.

use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue};

use super::config::OsticketStreamConfig;
use crate::streams::DeliveryError;
use crate::streams::http_client::{
    Failure, build_client, snippet, unreachable, unreachable_reason,
};
use crate::url::redact_url;

/// What osTicket says when it refuses a ticket on validation (missing
/// e-mail, unknown help topic...). Sending the same ticket again cannot
/// succeed, so it is permanent whatever the status: current releases answer
/// 400, some have answered 500.
const VALIDATION_REFUSAL: &str = "Unable to create new ticket: validation errors";

/// osTicket 1.18's form of the same refusal, with 500 and the reason after
/// the colon (`Unable to create new ticket :<reason>`).
const REFUSAL_1_18: &str = "Unable to create new ticket :";

/// The one reason of that form that names nothing about the ticket.
const UNKNOWN_REFUSAL: &str = "unknown error";

/// Whether `body` refuses the ticket itself, so that sending it again
/// cannot succeed. ("Incomplete client information" counts: it is also
/// what osTicket says when it cannot look the e-mail's domain up, which an
/// operator fixes before `deskbus dlq retry`, as with a refused key.)
fn refuses_the_ticket(body: &str) -> bool {
    body.contains(VALIDATION_REFUSAL)
        || (body.contains(REFUSAL_1_18) && !body.contains(UNKNOWN_REFUSAL))
}

pub(super) struct Client {
    http: reqwest::Client,
    url: String,
}

impl Client {
    pub(super) fn new(config: &OsticketStreamConfig) -> Result<Client, String> {
        let mut key = HeaderValue::from_str(config.api_key.expose())
            .map_err(|_| "`api_key` holds characters an HTTP header cannot carry".to_owned())?;
        key.set_sensitive(true);
        let mut headers = HeaderMap::new();
        headers.insert("X-API-Key", key);
        Ok(Client {
            http: build_client(config.timeout, headers)?,
            url: config.url.clone(),
        })
    }

    /// Creates one ticket from its JSON; returns the ticket number osTicket
    /// answered (empty if it answered 201 without one).
    pub(super) async fn create(&self, ticket: Vec<u8>) -> Result<String, DeliveryError> {
        let response = self
            .http
            .post(&self.url)
            .header(CONTENT_TYPE, "application/json")
            .body(ticket)
            .send()
            .await
            .map_err(|e| unreachable(&self.url, e))?;
        match response.status() {
            // The ticket exists from here on: whatever happens next, never
            // ask for a retry, which would create it again.
            StatusCode::CREATED => Ok(response
                .text()
                .await
                .map(|body| snippet(&body))
                .unwrap_or_default()),
            status if status.is_success() => Err(DeliveryError::permanent(format!(
                "osTicket answered {status}, not 201 Created with a ticket number; is `url` ({}) osTicket's …/api/tickets.json?",
                redact_url(&self.url)
            ))),
            _ => {
                let failure = Failure::read(response).await;
                let mut reason = format!(
                    "osTicket answered {}: {}",
                    failure.status,
                    one_line(&failure.body)
                );
                if failure.status == StatusCode::UNAUTHORIZED {
                    reason.push_str(
                        " (the key must be active, allowed to create tickets, and bound to the address deskbus connects from; \
                         once it is, `deskbus dlq retry --stream <this stream>` sends the refused tickets again)",
                    );
                }
                if refuses_the_ticket(&failure.body) {
                    return Err(DeliveryError::permanent(reason));
                }
                Err(failure.into_error(reason))
            }
        }
    }

    /// Posts `{}`. osTicket checks the key (active, allowed to create
    /// tickets, bound to this client's address) before it reads the body,
    /// then refuses an empty body with 400: so 400 proves the URL and the
    /// key, and no ticket can be created.
    pub(super) async fn probe(&self) -> Result<(), String> {
        let response = self
            .http
            .post(&self.url)
            .header(CONTENT_TYPE, "application/json")
            .body("{}")
            .send()
            .await
            .map_err(|e| unreachable_reason(&self.url, e))?;
        let status = response.status();
        let body = snippet(&response.text().await.unwrap_or_default());
        match status {
            StatusCode::BAD_REQUEST => Ok(()),
            StatusCode::UNAUTHORIZED => Err(format!("osTicket refused the API key: {body}")),
            status => Err(format!(
                "{} answered {status} to an empty ticket, where osTicket answers 400: {body}",
                redact_url(&self.url)
            )),
        }
    }
}

/// osTicket's message on one line (it lists validation errors one a line;
/// a reason is shown on one line by `deskbus dlq list` and in logs):
/// `head: a; b` from `head:\na\nb`.
fn one_line(body: &str) -> String {
    let mut lines = body.lines().map(str::trim).filter(|l| !l.is_empty());
    let head = lines.next().unwrap_or("").to_owned();
    let rest: Vec<&str> = lines.collect();
    match (rest.is_empty(), head.ends_with(':')) {
        (true, _) => head,
        (false, true) => format!("{head} {}", rest.join("; ")),
        (false, false) => format!("{head}; {}", rest.join("; ")),
    }
}

#[cfg(test)]
mod tests {
    use super::{one_line, refuses_the_ticket};

    #[test]
    fn messages_fit_one_line() {
        assert_eq!(
            one_line(
                "Unable to create new ticket: validation errors:\nemail: Valid email address required\nname: Name is required\n"
            ),
            "Unable to create new ticket: validation errors: email: Valid email address required; name: Name is required"
        );
        assert_eq!(one_line("Valid API key required"), "Valid API key required");
        assert_eq!(one_line("a\n\nb"), "a; b");
    }

    /// Both releases' refusals are recognised (1.18 answers 500 with
    /// `Unable to create new ticket :<reason>`), but for an unknown error.
    #[test]
    fn refusals_of_the_ticket_itself_are_told_apart() {
        assert!(refuses_the_ticket(
            "Unable to create new ticket: validation errors:\nemail: Valid email address required"
        ));
        assert!(refuses_the_ticket(
            "Unable to create new ticket :Invalid help topic"
        ));
        assert!(refuses_the_ticket(
            "Unable to create new ticket :user Incomplete client information"
        ));
        assert!(!refuses_the_ticket(
            "Unable to create new ticket : unknown error"
        ));
        assert!(!refuses_the_ticket("Internal Server Error"));
    }
}
