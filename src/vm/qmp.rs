//! A small blocking client for the QEMU Machine Protocol (QMP) over a unix socket.
//!
//! Why our own client and not the `qapi` crate (arcnmx/qapi-rs, 0.15 on crates.io; its
//! sources read for this): its blocking `qapi::Qmp` reads a `BufRead` with `read_line` into a
//! `String`, so one line from QEMU can grow without bound and non-UTF-8 bytes are an I/O
//! error; it panics (`expect("unexpected eof")`) when QEMU closes before the greeting; it sends
//! no request ids, so the late reply to a command that timed out is taken as the answer to
//! the next one; it has no deadline of its own (only whatever per-read socket timeout the
//! caller sets, which an event trickle keeps resetting); and it cannot attach a file
//! descriptor (SCM_RIGHTS) to a command, which `getfd`/`add-fd` need. Its typed commands come
//! from `qapi-qmp`, generated from one QEMU release's schema: a large build for the dozen
//! commands vmpool sends. Its other client is async and needs tokio, which vmpool does not
//! use. What vmpool needs (sync, one unix socket, a deadline per call, ids, fd passing) fits
//! in this one file over std, `nix` and `serde_json`.
//!
//! Protocol as QEMU 10.0 speaks it (seen on 10.0.2): every message is one JSON object on
//! one line ending in `\r\n`; events may arrive before the reply to the command that caused
//! them (`RESUME` before `cont`'s reply, `SHUTDOWN` before `quit`'s); after `quit` QEMU
//! resets the connection (ECONNRESET) rather than closing it cleanly. The monitor serves one
//! client at a time: a second connection is accepted by the kernel but gets no greeting
//! until the first one leaves, which `connect` turns into a timeout.

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, IoSlice, Read};
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::{
    self, AddressFamily, ControlMessage, MsgFlags, SockFlag, SockType, UnixAddr,
};
use serde_json::{Map, Value};

/// Largest message accepted from QEMU, in bytes. Big `query-*` replies stay far below it
/// (the largest seen, `query-qmp-schema`, is well under 1 MiB); the cap only exists so that a
/// confused peer cannot make us buffer without end.
pub const MAX_MESSAGE: usize = 16 << 20;

/// Events kept for `take_events`/`wait_event`; beyond this the oldest are dropped, so a
/// connection nobody drains cannot grow without bound.
const MAX_BUFFERED_EVENTS: usize = 4096;

/// Bytes asked of the kernel per read; a typical reply is a few hundred bytes, so one read
/// usually brings whole messages.
const READ_CHUNK: usize = 64 << 10;

/// How long connect waits between attempts while QEMU has not created or bound its socket.
const CONNECT_RETRY_MIN: Duration = Duration::from_millis(1);
const CONNECT_RETRY_MAX: Duration = Duration::from_millis(20);

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

fn protocol(msg: impl Into<String>) -> QmpError {
    QmpError::Protocol(msg.into())
}

/// At most 120 bytes of `line`, lossily decoded: enough to recognise a bad message in an
/// error without copying megabytes into it.
fn snippet(line: &[u8]) -> String {
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

/// When a call must be over. `None` means the caller's duration does not fit an `Instant`
/// (e.g. `Duration::MAX`): wait as long as it takes.
#[derive(Clone, Copy)]
struct Deadline {
    at: Option<Instant>,
    after: Duration,
}

impl Deadline {
    fn new(after: Duration) -> Self {
        Deadline {
            at: Instant::now().checked_add(after),
            after,
        }
    }

    /// Time left, or `None` once it has run out. Socket timeouts cannot be zero, so zero
    /// counts as run out.
    fn remaining(&self) -> Option<Duration> {
        match self.at {
            // Capped so the socket timeout stays well inside what a timeval holds.
            None => Some(Duration::from_secs(3600)),
            Some(at) => Some(at.saturating_duration_since(Instant::now())).filter(|d| !d.is_zero()),
        }
    }

    fn expired(&self, what: impl Into<String>) -> QmpError {
        QmpError::Timeout {
            what: what.into(),
            after: self.after,
        }
    }
}

fn io_err(context: impl Into<String>, source: impl Into<io::Error>) -> QmpError {
    QmpError::Io {
        context: context.into(),
        source: source.into(),
    }
}

/// A QMP connection to one QEMU.
///
/// Calls are strictly one at a time (`&mut self`); each carries its own deadline, checked
/// across every read and write it makes, so a QEMU that stops answering costs at most the
/// timeout given. Requests carry increasing ids and replies with any other id (late answers
/// to calls that timed out) are dropped, so a timeout does not desynchronise the connection.
///
/// The deadline is enforced with socket timeouts (SO_RCVTIMEO/SO_SNDTIMEO) set to the time
/// left before every read and write, rather than poll(2): no `unsafe` and no further `nix`
/// feature. The kernel keeps those timeouts on its timer wheel, which may fire late by up to
/// about an eighth of the wait (a 300 ms bound returned after 304-331 ms here), so treat a
/// timeout as a liveness bound, not a precise clock.
pub struct Qmp {
    stream: UnixStream,
    /// Bytes received; `buf[start..]` is not yet consumed.
    buf: Vec<u8>,
    start: usize,
    /// Bytes of `buf[start..]` already searched for a newline, so a large message arriving
    /// in many reads is scanned once, not once per read.
    scanned: usize,
    /// Skipping the rest of a line that exceeded `MAX_MESSAGE`.
    discarding: bool,
    /// The unsent tail of a request whose write timed out part-way; sent before anything
    /// else so that QEMU never sees two requests spliced together.
    unsent: Vec<u8>,
    events: VecDeque<Message>,
    next_id: u64,
    closed: bool,
    version: String,
}

impl fmt::Debug for Qmp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Qmp")
            .field("fd", &self.stream.as_raw_fd())
            .field("version", &self.version)
            .field("buffered_events", &self.events.len())
            .field("next_id", &self.next_id)
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

impl Qmp {
    /// Connect, read the greeting, negotiate capabilities (qmp_capabilities). Whole thing
    /// bounded by `timeout`.
    ///
    /// While QEMU is still starting (the socket file does not exist yet, nothing listens on
    /// it, or its accept queue is full) connect retries until the time is up; a timeout then
    /// names the last error. The socket is close-on-exec so that helpers vmpool spawns do not
    /// inherit QEMU's monitor.
    pub fn connect(path: &Path, timeout: Duration) -> Result<Qmp, QmpError> {
        let deadline = Deadline::new(timeout);
        let shown = path.display();
        let addr =
            UnixAddr::new(path).map_err(|e| io_err(format!("QMP socket path {shown}"), e))?;
        let mut pause = CONNECT_RETRY_MIN;
        let fd = loop {
            // Non-blocking so that a full accept queue is EAGAIN instead of a wait with no
            // bound; made blocking again below, where socket timeouts bound every call.
            let fd = socket::socket(
                AddressFamily::Unix,
                SockType::Stream,
                SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
                None,
            )
            .map_err(|e| io_err("create unix socket", e))?;
            let last = match socket::connect(fd.as_raw_fd(), &addr) {
                Ok(()) => break fd,
                Err(e @ (Errno::ENOENT | Errno::ECONNREFUSED | Errno::EAGAIN | Errno::EINTR)) => e,
                Err(e) => return Err(io_err(format!("connect to QMP socket {shown}"), e)),
            };
            let Some(left) = deadline.remaining() else {
                return Err(deadline.expired(format!("QMP socket {shown} to accept ({last})")));
            };
            std::thread::sleep(pause.min(left));
            pause = (pause * 2).min(CONNECT_RETRY_MAX);
        };
        let stream = UnixStream::from(fd);
        stream
            .set_nonblocking(false)
            .map_err(|e| io_err(format!("set QMP socket {shown} blocking"), e))?;
        let mut qmp = Qmp {
            stream,
            buf: Vec::new(),
            start: 0,
            scanned: 0,
            discarding: false,
            unsent: Vec::new(),
            events: VecDeque::new(),
            next_id: 1,
            closed: false,
            version: String::new(),
        };
        match qmp.read_message(&deadline, &format!("greeting on QMP socket {shown}"))? {
            Message::Greeting { version } => qmp.version = version,
            other => return Err(protocol(format!("expected a greeting, got {other:?}"))),
        }
        qmp.request("qmp_capabilities", None, &[], &deadline)?;
        Ok(qmp)
    }

    /// QEMU's version from the greeting, e.g. `"10.0.2"`.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Run a command and return its "return" value; QMP errors become
    /// QmpError::Command{class, desc}. Events that arrive meanwhile are buffered. Bounded by
    /// `timeout` (a QEMU that stops answering gives QmpError::Timeout, never a hang).
    ///
    /// After a timeout the connection stays usable: the late reply is recognised by its id
    /// and dropped. The command may still have run.
    pub fn execute(
        &mut self,
        command: &str,
        args: Option<Value>,
        timeout: Duration,
    ) -> Result<Value, QmpError> {
        self.request(command, args, &[], &Deadline::new(timeout))
    }

    /// Pass an open file descriptor to QEMU under `name` (QMP `getfd` with SCM_RIGHTS), e.g.
    /// for `migrate` to `fd:name`.
    ///
    /// QEMU keeps its own duplicate; the caller may close `fd` once this returns. A name
    /// already in use is replaced. QEMU 10 warns that `fd:` migration to a regular file is
    /// deprecated in favour of `file:`; see [`Qmp::add_fd`] for that.
    pub fn send_fd(
        &mut self,
        name: &str,
        fd: BorrowedFd<'_>,
        timeout: Duration,
    ) -> Result<(), QmpError> {
        let args = serde_json::json!({ "fdname": name });
        self.request(
            "getfd",
            Some(args),
            &[fd.as_raw_fd()],
            &Deadline::new(timeout),
        )
        .map(drop)
    }

    /// Put an open file descriptor into a new QEMU fd set (QMP `add-fd` with SCM_RIGHTS) and
    /// return the set's id `N`, usable as the path `/dev/fdset/N`, e.g. for `migrate` to
    /// `file:/dev/fdset/N,offset=0`, the form QEMU 10 prefers over `fd:` for regular files.
    pub fn add_fd(&mut self, fd: BorrowedFd<'_>, timeout: Duration) -> Result<u64, QmpError> {
        let reply = self.request(
            "add-fd",
            Some(Value::Object(Map::new())),
            &[fd.as_raw_fd()],
            &Deadline::new(timeout),
        )?;
        reply
            .get("fdset-id")
            .and_then(Value::as_u64)
            .ok_or_else(|| protocol(format!("add-fd returned no fdset-id: {reply}")))
    }

    /// Events buffered so far (drained).
    pub fn take_events(&mut self) -> Vec<Message> {
        self.events.drain(..).collect()
    }

    /// Wait until an event named `name` arrives (or is already buffered); returns it.
    ///
    /// The earliest buffered match is taken; other events stay buffered in order. Events
    /// that arrived before the connection closed are still found; after that, `Closed`.
    pub fn wait_event(&mut self, name: &str, timeout: Duration) -> Result<Message, QmpError> {
        let is_match = |m: &Message| matches!(m, Message::Event { name: n, .. } if n == name);
        if let Some(pos) = self.events.iter().position(is_match) {
            if let Some(event) = self.events.remove(pos) {
                return Ok(event);
            }
        }
        let deadline = Deadline::new(timeout);
        let what = format!("event {name}");
        loop {
            match self.read_message(&deadline, &what)? {
                event @ Message::Event { .. } if is_match(&event) => return Ok(event),
                event @ Message::Event { .. } => self.push_event(event),
                // No command is outstanding: a late reply to one that timed out.
                Message::Return { .. } | Message::Error { .. } => {}
                Message::Greeting { .. } => return Err(protocol("greeting in mid-session")),
            }
        }
    }

    /// The next event (buffered first), waiting up to `timeout`; replies to commands that
    /// timed out earlier are skipped. The supervisor's event loop.
    pub fn next_event(&mut self, timeout: Duration) -> Result<Message, QmpError> {
        if let Some(event) = self.events.pop_front() {
            return Ok(event);
        }
        let deadline = Deadline::new(timeout);
        loop {
            match self.read_message(&deadline, "an event")? {
                event @ Message::Event { .. } => return Ok(event),
                Message::Return { .. } | Message::Error { .. } => {}
                Message::Greeting { .. } => return Err(protocol("greeting in mid-session")),
            }
        }
    }

    fn push_event(&mut self, event: Message) {
        if self.events.len() >= MAX_BUFFERED_EVENTS {
            self.events.pop_front();
        }
        self.events.push_back(event);
    }

    /// Send one command (with `fds` attached to its first byte) and wait for its reply.
    fn request(
        &mut self,
        command: &str,
        args: Option<Value>,
        fds: &[RawFd],
        deadline: &Deadline,
    ) -> Result<Value, QmpError> {
        if self.closed {
            return Err(QmpError::Closed);
        }
        let id = self.next_id;
        self.next_id += 1;
        let mut req = Map::new();
        req.insert("execute".into(), Value::from(command));
        if let Some(args) = args {
            req.insert("arguments".into(), args);
        }
        req.insert("id".into(), Value::from(id));
        let mut bytes = serde_json::to_vec(&Value::Object(req))
            .map_err(|e| protocol(format!("cannot encode {command}: {e}")))?;
        bytes.push(b'\n');

        let what = format!("reply to {command}");
        let tail = std::mem::take(&mut self.unsent);
        if !tail.is_empty() {
            if let Err(e) = self.write_all(&tail, &[], deadline, &what) {
                // Nothing of it went out: keep all of it for the next call.
                if self.unsent.is_empty() && !self.closed {
                    self.unsent = tail;
                }
                return Err(e);
            }
        }
        self.write_all(&bytes, fds, deadline, &what)?;
        loop {
            match self.read_message(deadline, &what)? {
                Message::Return {
                    id: Some(got),
                    value,
                } if got == id => return Ok(value),
                Message::Error {
                    id: Some(got),
                    class,
                    desc,
                } if got == id => return Err(QmpError::Command { class, desc }),
                // QEMU leaves out the id only when it could not parse a request; ours are
                // always valid JSON, so this is about the one just sent and worth failing
                // fast rather than waiting out the timeout.
                Message::Error {
                    id: None,
                    class,
                    desc,
                } => {
                    return Err(protocol(format!(
                        "QEMU could not read the {command} request: {class}: {desc}"
                    )))
                }
                event @ Message::Event { .. } => self.push_event(event),
                // Late replies to calls that timed out.
                Message::Return { .. } | Message::Error { .. } => {}
                Message::Greeting { .. } => return Err(protocol("greeting in mid-session")),
            }
        }
    }

    /// Write all of `bytes`, the first chunk carrying `fds`. MSG_NOSIGNAL because vmpool is
    /// also a C library: its host may not ignore SIGPIPE, and a QEMU that exited must be an
    /// error, not a killed process.
    fn write_all(
        &mut self,
        bytes: &[u8],
        mut fds: &[RawFd],
        deadline: &Deadline,
        what: &str,
    ) -> Result<(), QmpError> {
        let mut off = 0;
        while off < bytes.len() {
            let Some(left) = deadline.remaining() else {
                if off > 0 {
                    self.unsent = bytes[off..].to_vec();
                }
                return Err(deadline.expired(what));
            };
            self.stream
                .set_write_timeout(Some(left))
                .map_err(|e| io_err("set QMP socket write timeout", e))?;
            let fd = self.stream.as_raw_fd();
            let rest = &bytes[off..];
            let sent = if fds.is_empty() {
                socket::send(fd, rest, MsgFlags::MSG_NOSIGNAL)
            } else {
                let rights = [ControlMessage::ScmRights(fds)];
                socket::sendmsg::<UnixAddr>(
                    fd,
                    &[IoSlice::new(rest)],
                    &rights,
                    MsgFlags::MSG_NOSIGNAL,
                    None,
                )
            };
            match sent {
                Ok(n) => {
                    off += n;
                    fds = &[];
                }
                // EAGAIN: the write timeout fired; the loop re-checks the deadline.
                Err(Errno::EINTR | Errno::EAGAIN) => {}
                Err(Errno::EPIPE | Errno::ECONNRESET) => {
                    self.closed = true;
                    return Err(QmpError::Closed);
                }
                Err(e) => return Err(io_err("write to QMP socket", e)),
            }
        }
        Ok(())
    }

    /// The next message, reading from the socket only when no whole line is buffered.
    fn read_message(&mut self, deadline: &Deadline, what: &str) -> Result<Message, QmpError> {
        loop {
            if let Some(msg) = self.buffered_message()? {
                return Ok(msg);
            }
            self.fill(deadline, what)?;
        }
    }

    /// Parse the next whole line in the buffer, if there is one.
    fn buffered_message(&mut self) -> Result<Option<Message>, QmpError> {
        loop {
            let from = self.start + self.scanned;
            let Some(nl) = self.buf[from..].iter().position(|&b| b == b'\n') else {
                self.scanned = self.buf.len() - self.start;
                if self.discarding {
                    self.reset_buffer();
                } else if self.scanned > MAX_MESSAGE {
                    // Drop what we have and skip to the end of the line; the connection
                    // stays usable and this call reports the loss.
                    self.reset_buffer();
                    self.discarding = true;
                    return Err(protocol(format!(
                        "message larger than the {MAX_MESSAGE}-byte limit; skipped"
                    )));
                }
                return Ok(None);
            };
            let end = from + nl;
            let line_start = self.start;
            self.start = end + 1;
            self.scanned = 0;
            if std::mem::take(&mut self.discarding) {
                continue;
            }
            let line = self.buf[line_start..end].trim_ascii();
            if line.is_empty() {
                continue;
            }
            let msg = parse_message(line);
            self.compact();
            return msg.map(Some);
        }
    }

    fn reset_buffer(&mut self) {
        self.buf.clear();
        self.start = 0;
        self.scanned = 0;
        if self.buf.capacity() > 4 * READ_CHUNK {
            self.buf.shrink_to(READ_CHUNK);
        }
    }

    /// Drop consumed bytes: all of them when the buffer is used up (the common case), else
    /// once they are the larger part, so a burst of messages is not moved once per message.
    fn compact(&mut self) {
        if self.start == self.buf.len() {
            self.reset_buffer();
        } else if self.start > READ_CHUNK && self.start > self.buf.len() / 2 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
    }

    /// One read from the socket into the buffer, waiting at most until the deadline.
    fn fill(&mut self, deadline: &Deadline, what: &str) -> Result<(), QmpError> {
        if self.closed {
            return Err(QmpError::Closed);
        }
        loop {
            let Some(left) = deadline.remaining() else {
                return Err(deadline.expired(what));
            };
            self.stream
                .set_read_timeout(Some(left))
                .map_err(|e| io_err("set QMP socket read timeout", e))?;
            let old = self.buf.len();
            self.buf.resize(old + READ_CHUNK, 0);
            let got = (&self.stream).read(&mut self.buf[old..]);
            self.buf.truncate(old + *got.as_ref().unwrap_or(&0));
            match got {
                Ok(0) => {
                    self.closed = true;
                    return Err(QmpError::Closed);
                }
                Ok(_) => return Ok(()),
                Err(e) => match e.kind() {
                    io::ErrorKind::WouldBlock
                    | io::ErrorKind::TimedOut
                    | io::ErrorKind::Interrupted => {}
                    io::ErrorKind::ConnectionReset => {
                        self.closed = true;
                        return Err(QmpError::Closed);
                    }
                    _ => return Err(io_err("read from QMP socket", e)),
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const GREETING: &[u8] = br#"{"QMP": {"version": {"qemu": {"micro": 2, "minor": 0, "major": 10}, "package": "Debian 1:10.0.2+ds-2+deb13u1~bpo12+1"}, "capabilities": ["oob"]}}"#;

    fn is_protocol(r: Result<Message, QmpError>) -> bool {
        matches!(r, Err(QmpError::Protocol(_)))
    }

    #[test]
    fn greeting() {
        assert_eq!(
            parse_message(GREETING).unwrap(),
            Message::Greeting {
                version: "10.0.2".into()
            }
        );
        let mut crlf = GREETING.to_vec();
        crlf.extend_from_slice(b"\r\n");
        assert!(matches!(parse_message(&crlf), Ok(Message::Greeting { .. })));
        assert!(is_protocol(parse_message(br#"{"QMP": {}}"#)));
        assert!(is_protocol(parse_message(
            br#"{"QMP": {"version": {"qemu": {"major": "10", "minor": 0, "micro": 2}}}}"#
        )));
    }

    #[test]
    fn returns() {
        assert_eq!(
            parse_message(br#"{"return": {"status": "prelaunch", "running": false}, "id": 2}"#)
                .unwrap(),
            Message::Return {
                id: Some(2),
                value: json!({"status": "prelaunch", "running": false})
            }
        );
        assert_eq!(
            parse_message(br#"{"return": {}}"#).unwrap(),
            Message::Return {
                id: None,
                value: json!({})
            }
        );
        // Non-object return values exist (query-* lists).
        assert_eq!(
            parse_message(br#"{"return": [1, 2], "id": 0}"#).unwrap(),
            Message::Return {
                id: Some(0),
                value: json!([1, 2])
            }
        );
        // Ids we never send.
        assert!(is_protocol(parse_message(br#"{"return": {}, "id": "x"}"#)));
        assert!(is_protocol(parse_message(br#"{"return": {}, "id": -1}"#)));
        assert!(is_protocol(parse_message(br#"{"return": {}, "id": 1.5}"#)));
    }

    #[test]
    fn errors() {
        assert_eq!(
            parse_message(br#"{"id": 3, "error": {"class": "CommandNotFound", "desc": "The command nonexistent has not been found"}}"#).unwrap(),
            Message::Error {
                id: Some(3),
                class: "CommandNotFound".into(),
                desc: "The command nonexistent has not been found".into()
            }
        );
        assert!(matches!(
            parse_message(br#"{"error": {"class": "GenericError", "desc": "JSON parse error"}}"#),
            Ok(Message::Error { id: None, .. })
        ));
        assert!(is_protocol(parse_message(
            br#"{"error": {"class": "GenericError"}}"#
        )));
        assert!(is_protocol(parse_message(br#"{"error": "nope", "id": 1}"#)));
    }

    #[test]
    fn events() {
        assert_eq!(
            parse_message(br#"{"timestamp": {"seconds": 1795689983, "microseconds": 946476}, "event": "MIGRATION", "data": {"status": "completed"}}"#).unwrap(),
            Message::Event {
                name: "MIGRATION".into(),
                data: json!({"status": "completed"}),
                seconds: 1795689983,
                micros: 946476
            }
        );
        assert_eq!(
            parse_message(
                br#"{"timestamp": {"seconds": -1, "microseconds": -1}, "event": "STOP"}"#
            )
            .unwrap(),
            Message::Event {
                name: "STOP".into(),
                data: Value::Null,
                seconds: -1,
                micros: -1
            }
        );
        assert!(is_protocol(parse_message(br#"{"event": "STOP"}"#)));
        assert!(is_protocol(parse_message(
            br#"{"event": 7, "timestamp": {"seconds": 1, "microseconds": 2}}"#
        )));
    }

    #[test]
    fn unknown_members_are_ignored_but_shapes_are_checked() {
        assert!(matches!(
            parse_message(br#"{"return": {}, "id": 1, "future": true}"#),
            Ok(Message::Return { id: Some(1), .. })
        ));
        assert!(is_protocol(parse_message(
            br#"{"return": {}, "error": {}}"#
        )));
        assert!(is_protocol(parse_message(br#"{"id": 1}"#)));
        assert!(is_protocol(parse_message(br#"{}"#)));
        assert!(is_protocol(parse_message(br#"[{"return": {}}]"#)));
        assert!(is_protocol(parse_message(b"42")));
    }

    #[test]
    fn garbage() {
        for bad in [
            &b""[..],
            b"\r\n",
            b"garbage",
            b"{",
            b"{\"return\": {}",
            b"{\"return\": {}} trailing",
            b"{\"return\": {}}\n{\"return\": {}}",
            b"\0\0\0",
            b"{\"return\": NaN}",
        ] {
            assert!(is_protocol(parse_message(bad)), "{:?}", snippet(bad));
        }
    }

    #[test]
    fn non_utf8() {
        assert!(is_protocol(parse_message(b"{\"return\": \"\xff\xfe\"}")));
        assert!(is_protocol(parse_message(b"\xff{\"return\": {}}")));
        // Escaped code points are fine, lone surrogates are not.
        assert!(matches!(
            parse_message(br#"{"return": "\u00e9"}"#),
            Ok(Message::Return { .. })
        ));
        assert!(is_protocol(parse_message(br#"{"return": "\ud800"}"#)));
    }

    #[test]
    fn nested() {
        let ok = format!("{{\"return\": {}{}}}", "[".repeat(100), "]".repeat(100));
        assert!(matches!(
            parse_message(ok.as_bytes()),
            Ok(Message::Return { .. })
        ));
        // Far past serde_json's recursion limit: an error, not a stack overflow.
        let deep = format!(
            "{{\"return\": {}{}}}",
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        assert!(is_protocol(parse_message(deep.as_bytes())));
        let open = "{\"a\":".repeat(1_000_000);
        assert!(is_protocol(parse_message(open.as_bytes())));
    }

    #[test]
    fn huge() {
        // Just under the limit parses; just over is refused before any parsing.
        let body = MAX_MESSAGE - 32;
        let big = format!("{{\"return\": \"{}\", \"id\": 9}}", "a".repeat(body));
        assert!(big.len() <= MAX_MESSAGE);
        match parse_message(big.as_bytes()) {
            Ok(Message::Return { id: Some(9), value }) => {
                assert_eq!(value.as_str().map(str::len), Some(body))
            }
            other => panic!("unexpected {:?}", other.map(|_| ())),
        }
        let over = vec![b' '; MAX_MESSAGE + 1];
        assert!(is_protocol(parse_message(&over)));
    }

    /// A poor man's fuzz run: truncations, bit flips and random bytes never panic.
    #[test]
    fn never_panics() {
        let samples: [&[u8]; 4] = [
            GREETING,
            br#"{"return": {"status": "prelaunch", "running": false}, "id": 2}"#,
            br#"{"id": 3, "error": {"class": "CommandNotFound", "desc": "x"}}"#,
            br#"{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "STOP", "data": {}}"#,
        ];
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut rand = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for s in samples {
            for cut in 0..=s.len() {
                let _ = parse_message(&s[..cut]);
            }
            for _ in 0..2000 {
                let mut m = s.to_vec();
                let i = (rand() as usize) % m.len();
                m[i] = rand() as u8;
                let _ = parse_message(&m);
            }
        }
        for _ in 0..2000 {
            let len = (rand() % 64) as usize;
            let junk: Vec<u8> = (0..len).map(|_| rand() as u8).collect();
            let _ = parse_message(&junk);
        }
    }

    /// Framing cases QEMU will not produce on demand (split and merged writes, an oversized
    /// line, stale ids), played by a scripted peer. QEMU itself is in `tests/`.
    #[test]
    fn scripted_peer_framing() {
        use std::io::{BufRead, BufReader, Write};
        use std::os::unix::net::UnixListener;

        let dir = std::env::temp_dir().join(format!("qmp-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("peer.sock");
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).unwrap();
        let peer = std::thread::spawn(move || {
            let (mut out, _) = listener.accept().unwrap();
            let mut input = BufReader::new(out.try_clone().unwrap());
            let mut expect = |id: u64| {
                let mut line = String::new();
                input.read_line(&mut line).unwrap();
                let v: Value = serde_json::from_str(&line).unwrap();
                assert_eq!(v["id"], json!(id), "{line}");
            };
            let pause = || std::thread::sleep(Duration::from_millis(20));
            // Greeting in three pieces.
            for piece in GREETING.chunks(50) {
                out.write_all(piece).unwrap();
                pause();
            }
            out.write_all(b"\r\n").unwrap();
            expect(1);
            out.write_all(b"{\"return\": {}, \"id\": 1}\r\n").unwrap();
            // Several messages and half of another in one write.
            expect(2);
            out.write_all(
                b"{\"event\": \"E1\", \"timestamp\": {\"seconds\": 1, \"microseconds\": 2}}\r\n\
                  {\"return\": \"stale\", \"id\": 99}\r\n\
                  \r\n\
                  {\"return\": \"a\", \"id\": 2}\r\n\
                  {\"event\": \"E2\", \"timestamp\": {\"seco",
            )
            .unwrap();
            pause();
            out.write_all(b"nds\": 3, \"microseconds\": 4}}\r\n")
                .unwrap();
            // An oversized line, then the reply it delayed.
            expect(3);
            let mut big = b"{\"return\": \"".to_vec();
            big.resize(MAX_MESSAGE + READ_CHUNK * 3, b'x');
            big.extend_from_slice(b"\", \"id\": 3}\r\n{\"return\": \"late\", \"id\": 3}\r\n");
            out.write_all(&big).unwrap();
            expect(4);
            out.write_all(b"{\"return\": \"c\", \"id\": 4}\r\n")
                .unwrap();
            // A reply one byte at a time.
            expect(5);
            for b in b"{\"return\": \"d\", \"id\": 5}\r\n" {
                out.write_all(&[*b]).unwrap();
                std::thread::sleep(Duration::from_millis(1));
            }
            // An error without id (QEMU's answer to a request it cannot parse).
            expect(6);
            out.write_all(
                b"{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON parse error\"}}\r\n",
            )
            .unwrap();
            // Silence, then goodbye.
            expect(7);
            std::thread::sleep(Duration::from_millis(300));
        });

        let t = Duration::from_secs(10);
        let mut qmp = Qmp::connect(&path, t).unwrap();
        assert_eq!(qmp.version(), "10.0.2");
        assert_eq!(qmp.execute("a", None, t).unwrap(), json!("a"));
        assert!(matches!(
            qmp.wait_event("E2", t).unwrap(),
            Message::Event {
                seconds: 3,
                micros: 4,
                ..
            }
        ));
        let events = qmp.take_events();
        assert_eq!(events.len(), 1);
        assert!(matches!(&events[0], Message::Event { name, .. } if name == "E1"));
        assert!(matches!(
            qmp.execute("b", None, t),
            Err(QmpError::Protocol(_))
        ));
        assert!(
            qmp.buf.capacity() <= 2 * MAX_MESSAGE,
            "{}",
            qmp.buf.capacity()
        );
        assert_eq!(qmp.execute("c", None, t).unwrap(), json!("c"));
        assert!(
            qmp.buf.capacity() <= 4 * READ_CHUNK,
            "buffer kept {}",
            qmp.buf.capacity()
        );
        assert_eq!(qmp.execute("d", None, t).unwrap(), json!("d"));
        assert!(matches!(
            qmp.execute("e", None, t),
            Err(QmpError::Protocol(_))
        ));
        let started = Instant::now();
        assert!(matches!(
            qmp.execute("f", None, Duration::from_millis(100)),
            Err(QmpError::Timeout { .. })
        ));
        assert!(started.elapsed() < Duration::from_millis(250));
        peer.join().unwrap();
        assert!(matches!(qmp.execute("g", None, t), Err(QmpError::Closed)));
        assert!(matches!(qmp.wait_event("E3", t), Err(QmpError::Closed)));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn deadline_never_overflows() {
        let d = Deadline::new(Duration::MAX);
        assert!(d.remaining().is_some());
        assert!(Deadline::new(Duration::ZERO).remaining().is_none());
    }
}
