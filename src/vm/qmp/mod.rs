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
use std::os::fd::{AsRawFd, RawFd};
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

/// When a call must be over. `None` means the caller's duration does not fit an `Instant`
/// (e.g. `Duration::MAX`): wait as long as it takes.
#[derive(Clone, Copy)]
pub(super) struct Deadline {
    at: Option<Instant>,
    after: Duration,
}

impl Deadline {
    pub(super) fn new(after: Duration) -> Self {
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
        Qmp::handshake(stream, &deadline, &format!("QMP socket {shown}"))
    }

    /// Talk QMP on a connected socket (one vmpool connected through a checked descriptor, or
    /// one end of a socket pair whose other end QEMU holds): read the greeting and negotiate
    /// capabilities, the whole thing bounded by `timeout`. `what` names the peer in errors.
    pub fn from_stream(stream: UnixStream, timeout: Duration, what: &str) -> Result<Qmp, QmpError> {
        let deadline = Deadline::new(timeout);
        stream
            .set_nonblocking(false)
            .map_err(|e| io_err(format!("set {what} blocking"), e))?;
        Qmp::handshake(stream, &deadline, what)
    }

    fn handshake(stream: UnixStream, deadline: &Deadline, what: &str) -> Result<Qmp, QmpError> {
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
        match qmp.read_message(deadline, &format!("greeting on {what}"))? {
            Message::Greeting { version } => qmp.version = version,
            other => return Err(protocol(format!("expected a greeting, got {other:?}"))),
        }
        qmp.request("qmp_capabilities", None, &[], deadline)?;
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
    pub(super) fn request(
        &mut self,
        command: &str,
        args: Option<Value>,
        fds: &[RawFd],
        deadline: &Deadline,
    ) -> Result<Value, QmpError> {
        crate::probes::qmp(command, || {
            self.request_untraced(command, args, fds, deadline)
        })
    }

    fn request_untraced(
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

mod commands;
mod message;
#[cfg(test)]
mod tests;

pub use commands::{
    BlockStats, Display, MigrationStatus, RunStatus, BLOCKSTATS_MAX, COMMAND_TIMEOUT,
};
use message::protocol;
#[cfg(test)]
use message::snippet;
pub use message::{parse_message, Message, QmpError};
