//! What QEMU sends: one JSON object per line, parsed into a [`Message`], and the errors a
//! QMP call can end in.

use std::io;
use std::time::Duration;

use serde_json::{Map, Value};

use super::MAX_MESSAGE;

/// One message from QEMU.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// The greeting QEMU sends on connect.
    Greeting {
        /// QEMU's version as `major.minor.micro`, e.g. `"10.0.2"`.
        version: String,
    },
    /// A command's successful result.
    Return {
        /// The id of the command it answers (`None` if the command had none).
        id: Option<u64>,
        /// The command's result; `{}` for commands that return nothing.
        value: Value,
    },
    /// A command's failure.
    Error {
        /// The id of the command it answers; QEMU omits it when it could not parse the
        /// request far enough to find one.
        id: Option<u64>,
        /// QEMU's error class, e.g. `"GenericError"`, `"CommandNotFound"`.
        class: String,
        /// Human-readable description.
        desc: String,
    },
    /// An asynchronous event.
    Event {
        /// Event name, e.g. `"STOP"`, `"MIGRATION"`.
        name: String,
        /// The event's `data` member, or `Value::Null` for events that have none (`STOP`,
        /// `RESUME`).
        data: Value,
        /// Host wall-clock time of the event, seconds part.
        seconds: i64,
        /// Microseconds part of the time; QEMU sends -1 in both fields if it could not read
        /// the clock.
        micros: i64,
    },
}

/// What can go wrong talking to QEMU.
#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    /// A system call failed.
    #[error("{context}: {source}")]
    Io {
        /// What we were doing, with the socket path where known.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The call's time ran out before QEMU answered.
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout {
        /// What we were waiting for.
        what: String,
        /// The bound the caller gave.
        after: Duration,
    },
    /// QEMU sent something that is not QMP as we know it (bad JSON, an unknown shape, an
    /// oversized message, a greeting in mid-session).
    #[error("QMP protocol error: {0}")]
    Protocol(String),
    /// QEMU ran the command and reported an error.
    #[error("QMP command failed: {class}: {desc}")]
    Command {
        /// QEMU's error class.
        class: String,
        /// QEMU's description.
        desc: String,
    },
    /// QEMU closed the connection (it exited, or was told to `quit`).
    #[error("QMP connection closed by QEMU")]
    Closed,
}

impl QmpError {
    /// Whether QEMU is gone (the connection closed, or broke).
    pub fn is_closed(&self) -> bool {
        match self {
            QmpError::Closed => true,
            QmpError::Io { source, .. } => matches!(
                source.kind(),
                io::ErrorKind::BrokenPipe
                    | io::ErrorKind::ConnectionReset
                    | io::ErrorKind::UnexpectedEof
            ),
            _ => false,
        }
    }
}

pub(super) fn protocol(msg: impl Into<String>) -> QmpError {
    QmpError::Protocol(msg.into())
}

/// At most 120 bytes of `line`, lossily decoded: enough to recognise a bad message in an
/// error without copying megabytes into it.
pub(super) fn snippet(line: &[u8]) -> String {
    let cut = &line[..line.len().min(120)];
    let mut s = String::from_utf8_lossy(cut).into_owned();
    if cut.len() < line.len() {
        s.push_str("...");
    }
    s
}

/// Parse one QMP message (one line, with or without its line ending).
///
/// Pure and total: it never panics on any input, and anything that is not one of the four
/// shapes QMP defines is an error. Members QMP may add later are ignored, as the QMP
/// specification asks of clients; ids this client does not send (anything but an unsigned
/// integer) are errors.
pub fn parse_message(line: &[u8]) -> Result<Message, QmpError> {
    if line.len() > MAX_MESSAGE {
        return Err(protocol(format!(
            "message of {} bytes is larger than the {MAX_MESSAGE}-byte limit",
            line.len()
        )));
    }
    // serde_json validates UTF-8 and stops at 128 levels of nesting, so neither bad bytes
    // nor deep nesting can crash us.
    let value: Value = serde_json::from_slice(line)
        .map_err(|e| protocol(format!("invalid JSON ({e}): {}", snippet(line))))?;
    let Value::Object(mut obj) = value else {
        return Err(protocol(format!("not a JSON object: {}", snippet(line))));
    };
    let kinds = ["QMP", "return", "error", "event"]
        .iter()
        .filter(|k| obj.contains_key(**k))
        .count();
    if kinds != 1 {
        return Err(protocol(format!(
            "expected exactly one of QMP/return/error/event: {}",
            snippet(line)
        )));
    }
    if let Some(greeting) = obj.remove("QMP") {
        return parse_greeting(&greeting)
            .ok_or_else(|| protocol(format!("malformed greeting: {}", snippet(line))));
    }
    if let Some(value) = obj.remove("return") {
        return Ok(Message::Return {
            id: parse_id(&obj)?,
            value,
        });
    }
    if let Some(err) = obj.remove("error") {
        let id = parse_id(&obj)?;
        let field = |name: &str| err.get(name).and_then(Value::as_str).map(str::to_owned);
        return match (field("class"), field("desc")) {
            (Some(class), Some(desc)) => Ok(Message::Error { id, class, desc }),
            _ => Err(protocol(format!("malformed error: {}", snippet(line)))),
        };
    }
    let event = obj.remove("event").unwrap_or(Value::Null);
    let Value::String(name) = event else {
        return Err(protocol(format!(
            "event name is not a string: {}",
            snippet(line)
        )));
    };
    let stamp = obj.get("timestamp");
    let part = |k: &str| stamp.and_then(|t| t.get(k)).and_then(Value::as_i64);
    let (Some(seconds), Some(micros)) = (part("seconds"), part("microseconds")) else {
        return Err(protocol(format!(
            "event without a valid timestamp: {}",
            snippet(line)
        )));
    };
    let data = obj.remove("data").unwrap_or(Value::Null);
    Ok(Message::Event {
        name,
        data,
        seconds,
        micros,
    })
}

fn parse_greeting(greeting: &Value) -> Option<Message> {
    let qemu = greeting.get("version")?.get("qemu")?;
    let n = |k: &str| qemu.get(k).and_then(Value::as_u64);
    let version = format!("{}.{}.{}", n("major")?, n("minor")?, n("micro")?);
    Some(Message::Greeting { version })
}

fn parse_id(obj: &Map<String, Value>) -> Result<Option<u64>, QmpError> {
    match obj.get("id") {
        None => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| protocol(format!("reply id {v} is not one this client sends"))),
    }
}
