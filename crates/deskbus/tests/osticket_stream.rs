//! The `osticket` stream, with the binary in between, against a fake of
//! osTicket's ticket API (osTicket is a PHP application that cannot run
//! here). The fake follows osTicket's documented behaviour and code
//! (`include/class.api.php`, `include/api.tickets.php`): the key is checked
//! before the body is read; JSON is parsed; the message is an RFC 2397 data
//! URL read verbatim; name, email, subject and message are required and the
//! help topic must exist; success is 201 with the ticket number as the body;
//! refusals are plain-text messages.
//!
//! The AMQP end-to-end test publishes a XiVO `call_form_result` to the real
//! RabbitMQ on 127.0.0.1:5672 (`scripts/services rabbitmq`).

mod util;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::{Value, json};
use util::*;

const KEY: &str = "E5A3F8B2C1D94A7F8E6B5C4D3A2F1E0B";
/// A key osTicket knows but that may not create tickets.
const READ_ONLY_KEY: &str = "0123456789ABCDEF0123456789ABCDEF";
const FIRST_NUMBER: u64 = 719217;
const ORIGIN: &str = "ca7f87e9-c2c8-5fad-ba1b-c3140ebb9be3";

/// One request the fake answered 201 to.
#[derive(Debug, Clone)]
struct Ticket {
    number: String,
    json: Value,
    /// The message, decoded from its data URL.
    message: String,
    /// Attachments decoded: (name, type, bytes).
    files: Vec<(String, String, Vec<u8>)>,
}

#[derive(Default)]
struct Fake {
    tickets: Mutex<Vec<Ticket>>,
    /// When each request arrived, and the status answered.
    requests: Mutex<Vec<(Instant, u16)>>,
    /// Answer 500 (a PHP failure, not a validation refusal) to this many requests.
    fail: AtomicUsize,
    /// Then answer 503 with `Retry-After: 1` to this many.
    throttle: AtomicUsize,
    /// Answers given, in order, before any of the above (a proxy in front
    /// of osTicket: timeouts, rate limits, a moved URL).
    scripted: Mutex<std::collections::VecDeque<Response>>,
    /// Requests that followed a redirect to `/moved`.
    followed: AtomicUsize,
    next_number: AtomicU64,
}

impl Fake {
    fn tickets(&self) -> Vec<Ticket> {
        self.tickets.lock().unwrap().clone()
    }

    /// Request `n` (from 0) came at least a second after the one before:
    /// an answer's `Retry-After: 1` was honoured.
    fn assert_waited_a_second_before(&self, n: usize) {
        let requests = self.requests.lock().unwrap();
        let waited = requests[n].0 - requests[n - 1].0;
        assert!(
            waited >= Duration::from_millis(950),
            "Retry-After: 1 was not honoured: {waited:?}"
        );
    }

    fn statuses(&self) -> Vec<u16> {
        self.requests.lock().unwrap().iter().map(|r| r.1).collect()
    }
}

fn text(status: StatusCode, body: impl Into<String>) -> Response {
    (status, body.into()).into_response()
}

async fn create(State(fake): State<Arc<Fake>>, headers: HeaderMap, body: Bytes) -> Response {
    let response = answer(&fake, &headers, &body);
    fake.requests
        .lock()
        .unwrap()
        .push((Instant::now(), response.status().as_u16()));
    response
}

fn answer(fake: &Fake, headers: &HeaderMap, body: &[u8]) -> Response {
    // ApiController::requireApiKey, then canCreateTickets: before the body.
    match headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
        None => return text(StatusCode::UNAUTHORIZED, "Valid API key required"),
        Some(KEY) => {}
        Some(READ_ONLY_KEY) => return text(StatusCode::UNAUTHORIZED, "API key not authorized"),
        Some(_) => {
            return text(
                StatusCode::UNAUTHORIZED,
                "API key not found/active or source IP/hostname not authorized",
            );
        }
    }
    if let Some(response) = fake.scripted.lock().unwrap().pop_front() {
        return response;
    }
    // Some osTicket releases answer a refusal on validation with 500; with
    // `verify_email_addrs` and no DNS, every address is refused so.
    if String::from_utf8_lossy(body).contains("@nodns.invalid") {
        return text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Unable to create new ticket: validation errors:\nuser: Incomplete client information",
        );
    }
    if fake.fail.load(Ordering::SeqCst) > 0 {
        fake.fail.fetch_sub(1, Ordering::SeqCst);
        return text(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error");
    }
    if fake.throttle.load(Ordering::SeqCst) > 0 {
        fake.throttle.fetch_sub(1, Ordering::SeqCst);
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [("retry-after", "1")],
            "Service Unavailable",
        )
            .into_response();
    }
    // ApiJsonDataParser: an unreadable or empty body is refused as is.
    let ticket: serde_json::Map<String, Value> = match serde_json::from_slice(body) {
        Ok(Value::Object(map)) if !map.is_empty() => map,
        Ok(_) => return text(StatusCode::BAD_REQUEST, "Unable to parse request body"),
        Err(_) => return text(StatusCode::BAD_REQUEST, "Syntax error"),
    };
    let mut errors = Vec::new();
    let string = |key: &str| ticket.get(key).and_then(Value::as_str).unwrap_or("");
    if string("name").trim().is_empty() {
        errors.push("name: Name is required");
    }
    if !string("email").contains('@') {
        errors.push("email: Valid email address required");
    }
    if string("subject").trim().is_empty() {
        errors.push("subject: Subject is required");
    }
    let message = parse_data_url(string("message"));
    if message.1.is_empty() {
        errors.push("message: Message content is required");
    }
    if let Some(topic) = ticket.get("topicId")
        && !matches!(topic.as_u64(), Some(1 | 2))
    {
        errors.push("topicId: Invalid help topic selected");
    }
    if !errors.is_empty() {
        return text(
            StatusCode::BAD_REQUEST,
            format!(
                "Unable to create new ticket: validation errors:\n{}",
                errors.join("\n")
            ),
        );
    }
    let files = ticket
        .get("attachments")
        .and_then(Value::as_array)
        .map(|files| {
            files
                .iter()
                .filter_map(|f| {
                    let (name, url) = f.as_object()?.iter().next()?;
                    let (mime, data) = parse_data_url(url.as_str()?);
                    Some((name.clone(), mime, data))
                })
                .collect()
        })
        .unwrap_or_default();
    let number = (FIRST_NUMBER + fake.next_number.fetch_add(1, Ordering::SeqCst)).to_string();
    fake.tickets.lock().unwrap().push(Ticket {
        number: number.clone(),
        json: Value::Object(ticket.clone()),
        message: String::from_utf8_lossy(&message.1).into_owned(),
        files,
    });
    text(StatusCode::CREATED, number)
}

/// Format::parseRfc2397 as osTicket has it: the content after the first
/// comma is taken verbatim (no percent-decoding), base64-decoded when the
/// parameters are exactly `base64`; text without `data:` is plain text.
fn parse_data_url(data: &str) -> (String, Vec<u8>) {
    let Some(rest) = data.strip_prefix("data:") else {
        return ("text/plain".into(), data.as_bytes().to_vec());
    };
    let (meta, contents) = rest.split_once(',').unwrap_or((rest, ""));
    let (mime, extra) = meta.split_once(';').unwrap_or((meta, ""));
    let bytes = match extra {
        "base64" => base64::engine::general_purpose::STANDARD
            .decode(contents)
            .unwrap_or_default(),
        _ => contents.as_bytes().to_vec(),
    };
    (mime.to_owned(), bytes)
}

/// Serves the fake on a free loopback port: POST and GET on
/// /api/tickets.json (GET answers as osTicket's dispatcher does).
async fn serve(fake: Arc<Fake>) -> SocketAddr {
    let app = axum::Router::new()
        .route(
            "/api/tickets.json",
            axum::routing::post(create)
                .get(|| async { text(StatusCode::BAD_REQUEST, "URL not supported") }),
        )
        .route(
            "/moved",
            axum::routing::any(|State(fake): State<Arc<Fake>>| async move {
                fake.followed.fetch_add(1, Ordering::SeqCst);
                text(StatusCode::CREATED, "999999")
            }),
        )
        .with_state(fake);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    addr
}

/// The ticket mapping of the example, plus every other key.
const TICKET: &str = r#"ticket = { name = "{variables.firstname} {variables.lastname}", email = "{variables.email}", subject = "Call form from user {user_id}", message = "{variables.notes:-(no notes)}", topic_id = "1", priority = 2, phone = "{variables.phone:-}", source = "Phone", alert = false, autorespond = false, fields = { xivo_user = "{user_id}", customer_id = "{variables.customer:-}" }, attachments = [{ name = "form-{user_id}.txt", data = "{variables.form:-}", type = "text/plain" }] }"#;

/// webhook `web` → use case `call_forms` → osticket stream `helpdesk`.
fn config(dir: &Path, admin: SocketAddr, web: SocketAddr, api: SocketAddr, key: &str) -> String {
    format!(
        r#"[general]
data_dir = "{data}"
shutdown_timeout = "5s"

[admin]
address = "{admin}"

[log]
level = "info"

[sources.web]
type = "webhook"
address = "{web}"

[streams.helpdesk]
type = "osticket"
url = "http://{api}/api/tickets.json"
api_key = "{key}"

[streams.helpdesk.retry]
initial_backoff = "50ms"
max_backoff = "2s"

[use_cases.call_forms]
inputs = ["web"]
events = ["call_form_result"]
stream = "helpdesk"
{TICKET}
"#,
        data = dir.join("data").display(),
    )
}

struct Setup {
    dir: tempfile::TempDir,
    fake: Arc<Fake>,
    api: SocketAddr,
    admin: SocketAddr,
    web: SocketAddr,
}

async fn setup() -> Setup {
    let fake = Arc::new(Fake::default());
    let api = serve(fake.clone()).await;
    Setup {
        dir: tempfile::tempdir().unwrap(),
        fake,
        api,
        admin: ([127, 0, 0, 1], free_port()).into(),
        web: ([127, 0, 0, 1], free_port()).into(),
    }
}

impl Setup {
    fn config(&self, key: &str) -> String {
        config(self.dir.path(), self.admin, self.web, self.api, key)
    }

    fn start(&self, config: &str) -> Deskbus {
        Deskbus::start(self.dir.path(), config, self.admin, self.web)
    }
}

/// A XiVO call form, as the bus carries it, with the webhook's `id`.
fn call_form(id: &str, variables: Value) -> Value {
    json!({"id": id, "name": "call_form_result", "origin_uuid": ORIGIN,
           "data": {"user_id": 40, "variables": variables}})
}

fn john() -> Value {
    json!({"firstname": "John", "lastname": "Doe", "email": "john@example.com"})
}

async fn wait_async(timeout: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The ticket number recorded for an event, read from the spool as
/// deskbus left it (a second handle on the same file, as the CLI opens it).
fn link(dir: &Path, event_id: &str) -> Option<String> {
    let spool =
        deskbus_spool::Spool::open(deskbus_spool::SpoolOptions::new(dir.join("data/spool.db")))
            .unwrap();
    let number = spool
        .link("osticket:helpdesk", &format!("{event_id}/call_forms"))
        .unwrap();
    spool.close();
    number
}

fn dlq_list(bus: &Deskbus) -> String {
    let (code, stdout, stderr) = bus.cli(&["dlq", "list"]);
    assert_eq!(code, 0, "{stderr}");
    stdout
}

/// Every key of the mapping reaches osTicket as its API names it; the
/// message and the attachment decode as osTicket decodes them; the ticket
/// number is logged and kept in the spool's links.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_form_becomes_a_ticket_whose_number_is_kept() {
    let s = setup().await;
    let bus = s.start(&s.config(KEY));
    let id = uuid7();
    let form = base64::engine::general_purpose::STANDARD.encode("firstname=John\nlastname=Doe");
    let mut variables = john();
    variables["notes"] = json!("Printer on fire, 100% sure; call back, please");
    variables["phone"] = json!("+33 1 23 45 67 89");
    variables["form"] = json!(form);
    post(&bus, &[call_form(&id, variables)]).await;
    wait_async(Duration::from_secs(20), "the ticket", || {
        s.fake.tickets().len() == 1
    })
    .await;
    let ticket = s.fake.tickets().remove(0);
    assert_eq!(
        ticket.json,
        json!({
            "name": "John Doe",
            "email": "john@example.com",
            "subject": "Call form from user 40",
            "message": "data:text/plain;charset=utf-8,Printer on fire, 100% sure; call back, please",
            "topicId": 1,
            "priority": 2,
            "phone": "+33 1 23 45 67 89",
            "source": "Phone",
            "alert": false,
            "autorespond": false,
            "xivo_user": "40",
            "attachments": [{"form-40.txt": format!("data:text/plain;base64,{form}")}],
        })
    );
    assert_eq!(
        ticket.message,
        "Printer on fire, 100% sure; call back, please"
    );
    assert_eq!(
        ticket.files,
        [(
            "form-40.txt".to_owned(),
            "text/plain".to_owned(),
            b"firstname=John\nlastname=Doe".to_vec()
        )]
    );
    assert_eq!(ticket.number, FIRST_NUMBER.to_string());
    wait_for(
        Duration::from_secs(10),
        "the ticket number in the log",
        || bus.log().contains("osTicket ticket created"),
    );
    let log = bus.log();
    assert!(
        log.contains(&format!("ticket_number=\"{FIRST_NUMBER}\"")),
        "{log}"
    );
    assert!(!log.contains(KEY), "the API key reached the log");
    assert_eq!(link(s.dir.path(), &id), Some(FIRST_NUMBER.to_string()));
    wait_for(Duration::from_secs(10), "the delivery", || {
        bus.metric("deskbus_stream_delivered_events_total", "helpdesk") == 1.0
    });
    assert_eq!(
        bus.metric("deskbus_osticket_tickets_created_total", "helpdesk"),
        1.0
    );
    assert_eq!(s.fake.statuses(), [201]);
}

/// 4xx answers are final: the event goes to dead letters with osTicket's
/// own message, after one request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_go_to_dead_letters_with_osticket_messages() {
    let s = setup().await;
    // One stream with an unknown key, one with a key that may not create
    // tickets, and one valid, whose use cases name a help topic that does
    // not exist, or an address the fake refuses with a 500.
    let config = s.config("WRONGKEY")
        + &format!(
            r#"
[streams.readonly]
type = "osticket"
url = "http://{api}/api/tickets.json"
api_key = "{READ_ONLY_KEY}"

[streams.valid]
type = "osticket"
url = "http://{api}/api/tickets.json"
api_key = "{KEY}"

[use_cases.readonly]
inputs = ["web"]
events = ["call_form_result"]
stream = "readonly"
{TICKET}

[use_cases.bad_topic]
inputs = ["web"]
events = ["call_form_result"]
stream = "valid"
{}

[use_cases.no_dns]
inputs = ["web"]
events = ["call_form_result"]
stream = "valid"
{}
"#,
            TICKET.replace("topic_id = \"1\"", "topic_id = \"99\""),
            TICKET.replace("{variables.email}", "john@nodns.invalid"),
            api = s.api,
        );
    let bus = s.start(&config);
    let id = uuid7();
    post(&bus, &[call_form(&id, john())]).await;
    wait_for(Duration::from_secs(20), "four dead letters", || {
        dlq_list(&bus).contains("4 dead letters")
    });
    let list = dlq_list(&bus);
    for (stream, use_case, message) in [
        (
            "helpdesk",
            "call_forms",
            "osTicket answered 401 Unauthorized: API key not found/active or source IP/hostname not authorized",
        ),
        (
            "readonly",
            "readonly",
            "osTicket answered 401 Unauthorized: API key not authorized",
        ),
        (
            "valid",
            "bad_topic",
            // osTicket's lines, joined: a dead letter's reason is one line.
            "osTicket answered 400 Bad Request: Unable to create new ticket: validation errors: topicId: Invalid help topic selected",
        ),
        (
            "valid",
            "no_dns",
            // A refusal on validation is final even as a 500.
            "osTicket answered 500 Internal Server Error: Unable to create new ticket: validation errors: user: Incomplete client information",
        ),
    ] {
        let line = dead_letter_line(&list, stream, use_case);
        assert!(line.contains(message) && line.contains(&id), "{line}");
    }
    assert!(s.fake.tickets().is_empty());
    assert_eq!(s.fake.statuses().len(), 4, "a refusal must not be retried");

    // The recovery the reason names: fix the key, restart, and move the
    // stream's dead letters back. The event keeps its id, so its ticket
    // number is linked to it as if the first post had worked.
    drop(bus);
    let fixed = config.replacen("api_key = \"WRONGKEY\"", &format!("api_key = \"{KEY}\""), 1);
    let bus = s.start(&fixed);
    let (code, stdout, stderr) = bus.cli(&["dlq", "retry", "--stream", "helpdesk"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("1 dead letter moved back"), "{stdout}");
    wait_async(
        Duration::from_secs(20),
        "the ticket after the key fix",
        || s.fake.tickets().len() == 1,
    )
    .await;
    wait_for(Duration::from_secs(10), "the link", || {
        link(s.dir.path(), &id).is_some()
    });
    let list = dlq_list(&bus);
    assert!(list.contains("3 dead letters"), "{list}");
}

/// The `deskbus dlq list` line of a dead letter of `stream` and `use_case`.
fn dead_letter_line<'a>(list: &'a str, stream: &str, use_case: &str) -> &'a str {
    list.lines()
        .find(|l| {
            let mut columns = l.split_whitespace().skip(1);
            columns.next() == Some(stream) && columns.next() == Some(use_case)
        })
        .unwrap_or_else(|| panic!("no dead letter of {stream}/{use_case}:\n{list}"))
}

/// 500 and 503 are retried, after `Retry-After` when osTicket (or its
/// proxy) gives one, until the ticket is created: once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_retried_until_the_ticket_is_created_once() {
    let s = setup().await;
    s.fake.fail.store(3, Ordering::SeqCst);
    s.fake.throttle.store(1, Ordering::SeqCst);
    let bus = s.start(&s.config(KEY));
    let id = uuid7();
    post(&bus, &[call_form(&id, john())]).await;
    wait_async(Duration::from_secs(20), "the ticket", || {
        s.fake.tickets().len() == 1
    })
    .await;
    assert_eq!(s.fake.statuses(), [500, 500, 500, 503, 201]);
    s.fake.assert_waited_a_second_before(4);
    wait_for(Duration::from_secs(10), "the link", || {
        link(s.dir.path(), &id).is_some()
    });
    assert!(dlq_list(&bus).contains("0 dead letters"));
    assert!(bus.metric("deskbus_stream_retried_events_total", "helpdesk") >= 4.0);
}

/// What a proxy in front of osTicket may answer: 408 and 429 are retried
/// (after `Retry-After`), and a redirect is never followed (a followed 302
/// turns the POST into a GET, whose answer would count as a ticket): the
/// event goes to dead letters, saying to fix `url`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_and_rate_limits_are_retried_and_redirects_never_followed() {
    let s = setup().await;
    s.fake.scripted.lock().unwrap().extend([
        text(StatusCode::REQUEST_TIMEOUT, "Request Timeout"),
        (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", "1")],
            "Too Many Requests",
        )
            .into_response(),
    ]);
    let bus = s.start(&s.config(KEY));
    let first = uuid7();
    post(&bus, &[call_form(&first, john())]).await;
    wait_async(Duration::from_secs(20), "the ticket", || {
        s.fake.tickets().len() == 1
    })
    .await;
    assert_eq!(s.fake.statuses(), [408, 429, 201]);
    s.fake.assert_waited_a_second_before(2);

    s.fake.scripted.lock().unwrap().push_back(
        (
            StatusCode::FOUND,
            [("location", format!("http://{}/moved", s.api))],
            "",
        )
            .into_response(),
    );
    let second = uuid7();
    post(&bus, &[call_form(&second, john())]).await;
    wait_for(Duration::from_secs(20), "the dead letter", || {
        dlq_list(&bus).contains("1 dead letter")
    });
    let list = dlq_list(&bus);
    let line = dead_letter_line(&list, "helpdesk", "call_forms");
    assert!(
        line.contains(&second) && line.contains("redirects are not followed"),
        "{line}"
    );
    assert_eq!(s.fake.followed.load(Ordering::SeqCst), 0);
    assert_eq!(s.fake.statuses(), [408, 429, 201, 302]);
    assert_eq!(s.fake.tickets().len(), 1);
}

/// A template naming a missing field without a default sends that event to
/// dead letters with the reason; the next events go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_field_sends_the_event_to_dead_letters_and_the_rest_goes_on() {
    let s = setup().await;
    let bus = s.start(&s.config(KEY));
    let (bad, good) = (uuid7(), uuid7());
    post(
        &bus,
        &[
            call_form(&bad, json!({"firstname": "Ann", "lastname": "Lee"})),
            call_form(&good, john()),
        ],
    )
    .await;
    wait_async(Duration::from_secs(20), "the good ticket", || {
        s.fake.tickets().len() == 1
    })
    .await;
    wait_for(Duration::from_secs(10), "the dead letter", || {
        dlq_list(&bus).contains("1 dead letter")
    });
    let list = dlq_list(&bus);
    let line = list.lines().find(|l| l.contains(&bad)).expect(&list);
    assert!(
        line.contains(
            "ticket.email: field `variables.email` is missing from the event and has no default"
        ),
        "{line}"
    );
    assert_eq!(s.fake.tickets()[0].json["email"], "john@example.com");
    // Nothing was sent for the bad event.
    assert_eq!(s.fake.statuses(), [201]);
}

/// An event whose ticket number is already recorded (deskbus stopped after
/// recording it, before recording the delivery) is not sent again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_with_a_recorded_ticket_is_not_sent_twice() {
    let s = setup().await;
    let id = uuid7();
    std::fs::create_dir_all(s.dir.path().join("data")).unwrap();
    let spool = deskbus_spool::Spool::open(deskbus_spool::SpoolOptions::new(
        s.dir.path().join("data/spool.db"),
    ))
    .unwrap();
    spool
        .put_link("osticket:helpdesk", &format!("{id}/call_forms"), "700001")
        .await
        .unwrap();
    spool.close();
    drop(spool);
    let bus = s.start(&s.config(KEY));
    post(&bus, &[call_form(&id, john())]).await;
    wait_for(Duration::from_secs(20), "the delivery", || {
        bus.metric("deskbus_stream_delivered_events_total", "helpdesk") == 1.0
    });
    assert_eq!(
        bus.metric("deskbus_osticket_tickets_already_created_total", "helpdesk"),
        1.0
    );
    assert!(s.fake.statuses().is_empty(), "{:?}", s.fake.statuses());
    assert_eq!(link(s.dir.path(), &id).as_deref(), Some("700001"));
}

/// A 201 whose body says no number still created the ticket: that much is
/// recorded, so a redelivery (the outcome lost in a crash) does not create
/// a second one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ticket_created_without_a_number_is_recorded_all_the_same() {
    let s = setup().await;
    s.fake
        .scripted
        .lock()
        .unwrap()
        .push_back(text(StatusCode::CREATED, ""));
    let bus = s.start(&s.config(KEY));
    let id = uuid7();
    post(&bus, &[call_form(&id, john())]).await;
    wait_for(Duration::from_secs(20), "the delivery", || {
        bus.metric("deskbus_stream_delivered_events_total", "helpdesk") == 1.0
    });
    assert_eq!(s.fake.statuses(), [201]);
    assert_eq!(
        link(s.dir.path(), &id).as_deref(),
        Some("created, number not given")
    );
}

/// A spool that refuses a created ticket's number for a moment (a lock
/// held by `deskbus dlq`, a full disk) gets it on a later try, within about
/// two seconds: without the record, a redelivery would create the ticket
/// again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ticket_number_the_spool_refused_for_a_moment_is_recorded_on_a_later_try() {
    let s = setup().await;
    let bus = s.start(&s.config(KEY));
    let spool = spool_sqlite(s.dir.path());
    spool
        .execute_batch(
            "CREATE TRIGGER refuse_links BEFORE INSERT ON links
             BEGIN SELECT RAISE(ABORT, 'links refused for a moment'); END;",
        )
        .unwrap();
    let id = uuid7();
    post(&bus, &[call_form(&id, john())]).await;
    wait_async(Duration::from_secs(20), "the ticket", || {
        s.fake.tickets().len() == 1
    })
    .await;
    // A try was refused (the next come 250 ms, 750 ms and 1.75 s after the
    // first); then the spool takes links again.
    wait_for(Duration::from_secs(20), "a refused try", || {
        bus.metric("deskbus_osticket_record_retries_total", "helpdesk") >= 1.0
    });
    spool.execute_batch("DROP TRIGGER refuse_links").unwrap();
    wait_for(Duration::from_secs(20), "the delivery", || {
        bus.metric("deskbus_stream_delivered_events_total", "helpdesk") == 1.0
    });
    assert!(
        link(s.dir.path(), &id).is_some_and(|n| !n.is_empty() && n != "created, number not given")
    );
    assert_eq!(s.fake.statuses(), [201]);
}

/// `deskbus check --connect` proves URL and key without creating a ticket,
/// and fails with osTicket's message for a refused key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_connect_proves_the_key_without_creating_a_ticket() {
    let s = setup().await;
    let path = s.dir.path().join("deskbus.toml");
    std::fs::write(&path, s.config(KEY)).unwrap();
    let (code, stdout, stderr) = check_connect(&path);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("stream helpdesk (osticket): ok"),
        "{stdout}"
    );
    assert_eq!(s.fake.statuses(), [400]);
    assert!(s.fake.tickets().is_empty());

    std::fs::write(&path, s.config("WRONGKEY")).unwrap();
    let (code, stdout, _) = check_connect(&path);
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains(
            "stream helpdesk (osticket): FAILED: osTicket refused the API key: API key not found/active or source IP/hostname not authorized"
        ),
        "{stdout}"
    );
    assert!(!stdout.contains("WRONGKEY"));
}

/// `deskbus format` prints the ticket JSON a use case would send.
#[test]
fn format_shows_the_ticket() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("deskbus.toml");
    let api: SocketAddr = ([127, 0, 0, 1], 9).into();
    std::fs::write(&path, config(dir.path(), api, api, api, KEY)).unwrap();
    let mut child = Command::new(BIN)
        .args(["format", "--raw", "--use-case", "call_forms"])
        .arg(&path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let event = call_form(&uuid7(), john());
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), event.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ticket: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(ticket["name"], "John Doe");
    assert_eq!(
        ticket["message"],
        "data:text/plain;charset=utf-8,(no notes)"
    );
    assert!(ticket.get("attachments").is_none() && ticket.get("customer_id").is_none());
    assert!(String::from_utf8_lossy(&out.stderr).contains("stream helpdesk"));
}

/// Where `needle` starts in `text`, as `line:column` (1-based).
fn place(text: &str, needle: &str) -> String {
    let at = text
        .find(needle)
        .unwrap_or_else(|| panic!("{needle:?} not in the config"));
    let line = text[..at].matches('\n').count() + 1;
    let column = text[..at].rsplit('\n').next().unwrap().chars().count() + 1;
    format!("{line}:{column}")
}

fn check(text: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(BIN).arg("check").arg(&path).output().unwrap();
    let stderr =
        String::from_utf8_lossy(&out.stderr).replace(&path.display().to_string(), "c.toml");
    (out.status.code().unwrap(), stderr)
}

/// `deskbus check` reports ticket problems at their place.
#[test]
fn check_reports_ticket_problems_at_their_place() {
    let addr: SocketAddr = ([127, 0, 0, 1], 9).into();
    let valid = config(Path::new("/tmp/x"), addr, addr, addr, KEY);
    let (code, stderr) = check(&valid);
    assert_eq!(code, 0, "{stderr}");

    // (change, the text the error points at, the message)
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "email = \"{variables.email}\"",
            "email = \"{variables.email\"",
            "\"{variables.email\"",
            "`use_cases.call_forms.ticket.email`: unclosed `{` at byte 0",
        ),
        (
            "customer_id = \"{variables.customer:-}\"",
            "customer_id = \"{@customer}\"",
            "\"{@customer}\"",
            "`use_cases.call_forms.ticket.fields.customer_id`: unknown envelope field `@customer`",
        ),
        (
            "data = \"{variables.form:-}\"",
            "data = \"{variables.form:-}}\"",
            "\"{variables.form:-}}\"",
            "`use_cases.call_forms.ticket.attachments[0].data`: unmatched `}`",
        ),
        (
            "email = \"{variables.email}\", ",
            "",
            "{ name = ",
            "[use_cases.call_forms.ticket] needs `email`",
        ),
        (
            "xivo_user = ",
            "topicId = ",
            "\"{user_id}\"",
            "`use_cases.call_forms.ticket.fields.topicId`: `topicId` is a key of osTicket's API",
        ),
        (
            "source = \"Phone\"",
            "sourse = \"Phone\"",
            "sourse",
            "unknown key `sourse` in [use_cases.call_forms.ticket]; did you mean `source`?",
        ),
        (
            "topic_id = \"1\"",
            "topic_id = true",
            "true",
            "`use_cases.call_forms.ticket.topic_id` must be a string, found boolean",
        ),
    ];
    for (from, to, at, message) in cases {
        assert!(valid.contains(from), "{from}");
        let text = valid.replacen(from, to, 1);
        let (code, stderr) = check(&text);
        assert_eq!(code, 2, "{to}: {stderr}");
        let want = format!("c.toml:{}: {message}", place(&text, at));
        assert!(stderr.contains(&want), "want {want}\ngot {stderr}");
    }

    // A use case of an osticket stream needs a ticket...
    let text = valid.replace(TICKET, "");
    let (code, stderr) = check(&text);
    assert_eq!(code, 2, "{stderr}");
    let want = format!(
        "c.toml:{}: [use_cases.call_forms] delivers to an osticket stream, so it needs `ticket`",
        place(&text, "\"helpdesk\"\n")
    );
    assert!(stderr.contains(&want), "want {want}\ngot {stderr}");

    // ...and only such a use case takes one.
    let text = valid
        .replace(
            &format!(
                "type = \"osticket\"\nurl = \"http://{addr}/api/tickets.json\"\napi_key = \"{KEY}\""
            ),
            "type = \"file\"\npath = \"./out.ndjson\"",
        )
        .replace(
            "stream = \"helpdesk\"",
            "stream = \"helpdesk\"\nqueue = \"q\"",
        );
    let (code, stderr) = check(&text);
    assert_eq!(code, 2, "{stderr}");
    let want = format!(
        "c.toml:{}: `use_cases.call_forms.ticket` applies to osticket streams only; stream `helpdesk` is a file stream",
        place(&text, "ticket = ")
    );
    assert!(stderr.contains(&want), "want {want}\ngot {stderr}");

    // The ticket is the payload: no serializer beside it.
    let text = valid.replace(
        TICKET,
        &format!("{TICKET}\nserializer = {{ type = \"csv\" }}"),
    );
    let (code, stderr) = check(&text);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "c.toml:{}: [use_cases.call_forms] has a `ticket`, which is the payload; `serializer` does not apply",
            place(&text, "serializer")
        )),
        "{stderr}"
    );

    // An osticket stream has no queues: a `queue` is ignored, with a warning.
    let text = valid.replace(
        "stream = \"helpdesk\"\n",
        "stream = \"helpdesk\"\nqueue = \"tickets.{user_id}\"\n",
    );
    let (code, stderr) = check(&text);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "c.toml:{}: warning: `use_cases.call_forms.queue`: an osticket stream has no queues; it is ignored",
            place(&text, "queue = ")
        )),
        "{stderr}"
    );

    // The stream needs its key.
    let text = valid.replace(&format!("api_key = \"{KEY}\"\n"), "");
    let (code, stderr) = check(&text);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("[streams.helpdesk] needs `api_key` (or `api_key_file`)"),
        "{stderr}"
    );
}

/// The shipped example, end to end: a XiVO `call_form_result` published to
/// RabbitMQ becomes a ticket in (the fake) osTicket.
#[cfg(feature = "amqp")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_turns_a_published_call_form_into_a_ticket() {
    use lapin::options::{BasicPublishOptions, ExchangeDeleteOptions, QueueDeleteOptions};
    use lapin::{BasicProperties, Connection, ConnectionProperties};

    let s = setup().await;
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/xivo-call-form-to-osticket.toml"
    ))
    .unwrap();
    // The broker is shared: an exchange and a queue of this test's own.
    let name = format!("deskbus.test.{}", uuid7());
    let (exchange, queue) = (name.clone(), format!("{name}.q"));
    let replacements = [
        ("exchange = \"xivo\"", format!("exchange = \"{exchange}\"")),
        (
            "queue = \"deskbus.call_forms\"",
            format!("queue = \"{queue}\""),
        ),
        (
            "http://127.0.0.1:8089/api/tickets.json",
            format!("http://{}/api/tickets.json", s.api),
        ),
        ("\"${OST_API_KEY}\"", format!("\"{KEY}\"")),
        (
            "data_dir = \"./deskbus-data\"",
            format!(
                "data_dir = \"{}\"\n\n[admin]\naddress = \"{}\"",
                s.dir.path().join("data").display(),
                s.admin
            ),
        ),
    ];
    let mut config = example.clone();
    for (from, to) in &replacements {
        assert!(config.contains(from), "the example changed: {from} is gone");
        config = config.replace(from, to);
    }
    let _bus = s.start(&config);

    let connection = match Connection::connect(
        "amqp://guest:guest@127.0.0.1:5672/%2f",
        ConnectionProperties::default(),
    )
    .await
    {
        Ok(c) => c,
        Err(e) => panic!(
            "RabbitMQ is not reachable on 127.0.0.1:5672 ({e}); run `scripts/services rabbitmq`"
        ),
    };
    let channel = connection.create_channel().await.unwrap();
    // As XiVO publishes it: a transient JSON message, routing key = event name.
    let body = json!({"name": "call_form_result", "origin_uuid": ORIGIN,
        "data": {"user_id": 40, "variables": john()}});
    channel
        .basic_publish(
            exchange.as_str().into(),
            "call_form_result".into(),
            BasicPublishOptions::default(),
            body.to_string().as_bytes(),
            BasicProperties::default().with_content_type("application/json".into()),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    wait_async(Duration::from_secs(30), "the ticket", || {
        s.fake.tickets().len() == 1
    })
    .await;
    assert_eq!(
        s.fake.tickets()[0].json,
        json!({
            "name": "John Doe",
            "email": "john@example.com",
            "subject": "Call form from user 40",
            "message": "data:text/plain;charset=utf-8,(no notes)",
            "topicId": 1,
        })
    );
    let _ = channel
        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await;
    let _ = channel
        .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
        .await;
    let _ = connection.close(200, "done".into()).await;
}
