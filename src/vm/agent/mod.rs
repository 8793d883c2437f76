//! A client for the QEMU guest agent (`qemu-ga`, on the virtio-serial port
//! `org.qemu.guest_agent.0` every VM has): ping, run a program and collect its output, read a
//! file, shut down.
//!
//! The agent runs inside the guest, so everything it says is the tenant's word: replies are
//! bounded (line length, output size, deadlines) and used only for what the guest may decide
//! about itself (is it up, what does its own file system say). No host decision (who owns a
//! VM, what it may reach, its resources) is ever taken on an agent's reply.
//!
//! Protocol as `qemu-ga` 7.2 (Debian 12) speaks it: JSON objects on lines, no greeting and no
//! ids; a client resynchronises with `guest-sync-delimited`, whose reply the agent precedes
//! with a 0xFF byte so that anything stale before it can be dropped.

use serde::Deserialize;
use serde_json::{json, Value};
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

mod ops;
pub use ops::AgentExec;

/// Longest reply line accepted from the agent (a file chunk or a program's output,
/// base64-encoded, with room to spare).
pub const MAX_LINE: usize = 8 << 20;

/// Bytes of a file asked for per `guest-file-read`.
const READ_CHUNK: usize = 1 << 20;

/// How a call to the agent failed.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// No answer within the time given (no agent running in the guest, or a stuck one).
    #[error("no answer from the guest agent within {0:?}")]
    Timeout(Duration),
    /// The agent (or the guest's program) reported an error.
    #[error("the guest agent says: {0}")]
    Guest(String),
    /// Something that is not the protocol (too long, not JSON, an unexpected reply).
    #[error("guest agent protocol: {0}")]
    Protocol(String),
    /// The connection failed.
    #[error("guest agent connection: {0}")]
    Io(#[from] io::Error),
}

/// A connection to one VM's guest agent.
#[derive(Debug)]
pub struct Agent {
    stream: UnixStream,
    buf: Vec<u8>,
}

/// What `guest-exec-status` says.
#[derive(Debug, Deserialize)]
struct ExecStatus {
    exited: bool,
    exitcode: Option<i32>,
    signal: Option<i32>,
    #[serde(rename = "out-data")]
    out_data: Option<String>,
    #[serde(rename = "err-data")]
    err_data: Option<String>,
}

fn b64(s: &str) -> Result<Vec<u8>, AgentError> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_err(|e| AgentError::Protocol(format!("bad base64 from the guest: {e}")))
}

impl Agent {
    /// Take a connected stream and synchronise with the agent within `timeout`.
    pub fn from_stream(stream: UnixStream, timeout: Duration) -> Result<Agent, AgentError> {
        let mut a = Agent {
            stream,
            buf: Vec::new(),
        };
        a.sync(timeout)?;
        Ok(a)
    }

    fn deadline_left(until: Instant, timeout: Duration) -> Result<Duration, AgentError> {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            Err(AgentError::Timeout(timeout))
        } else {
            Ok(left)
        }
    }

    /// One read from the agent into the buffer, within the deadline.
    fn read_more(&mut self, until: Instant, timeout: Duration) -> Result<(), AgentError> {
        self.stream
            .set_read_timeout(Some(Self::deadline_left(until, timeout)?))?;
        let mut chunk = [0u8; 64 << 10];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    return Err(AgentError::Io(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the agent's port closed",
                    )))
                }
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Ok(());
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(AgentError::Timeout(timeout))
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Read until one complete line is buffered; returns it without its newline.
    fn line(&mut self, until: Instant, timeout: Duration) -> Result<Vec<u8>, AgentError> {
        loop {
            if let Some(i) = self.buf.iter().position(|b| *b == b'\n') {
                let mut line: Vec<u8> = self.buf.drain(..=i).collect();
                line.pop();
                return Ok(line);
            }
            if self.buf.len() > MAX_LINE {
                return Err(AgentError::Protocol(format!(
                    "a reply longer than {MAX_LINE} bytes"
                )));
            }
            self.read_more(until, timeout)?;
        }
    }

    fn send(&mut self, bytes: &[u8], until: Instant, timeout: Duration) -> Result<(), AgentError> {
        self.stream
            .set_write_timeout(Some(Self::deadline_left(until, timeout)?))?;
        self.stream.write_all(bytes).map_err(|e| {
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) {
                AgentError::Timeout(timeout)
            } else {
                e.into()
            }
        })
    }

    /// `guest-sync-delimited` with a fresh id: drops whatever a previous, abandoned call
    /// left in either direction.
    fn sync(&mut self, timeout: Duration) -> Result<(), AgentError> {
        let until = Instant::now() + timeout;
        let id: u32 = rand_id();
        // 0xFF first: the agent's parser drops a half-written request it may hold.
        let mut req = vec![0xFF];
        req.extend_from_slice(
            json!({"execute": "guest-sync-delimited", "arguments": {"id": id}})
                .to_string()
                .as_bytes(),
        );
        req.push(b'\n');
        self.buf.clear();
        self.send(&req, until, timeout)?;
        loop {
            // Everything up to the agent's 0xFF is stale.
            if let Some(i) = self.buf.iter().position(|b| *b == 0xFF) {
                self.buf.drain(..=i);
                let line = self.line(until, timeout)?;
                match serde_json::from_slice::<Value>(&line) {
                    Ok(v) if v["return"].as_u64() == Some(u64::from(id)) => return Ok(()),
                    _ => continue,
                }
            }
            self.buf.clear();
            self.read_more(until, timeout)?;
        }
    }

    /// One command and its `return` value.
    pub fn call(
        &mut self,
        command: &str,
        arguments: Option<Value>,
        timeout: Duration,
    ) -> Result<Value, AgentError> {
        let until = Instant::now() + timeout;
        let mut req = match arguments {
            Some(a) => json!({"execute": command, "arguments": a}),
            None => json!({"execute": command}),
        }
        .to_string()
        .into_bytes();
        req.push(b'\n');
        self.send(&req, until, timeout)?;
        let line = self.line(until, timeout)?;
        let v: Value = serde_json::from_slice(&line)
            .map_err(|e| AgentError::Protocol(format!("not JSON ({e})")))?;
        if let Some(r) = v.get("return") {
            return Ok(r.clone());
        }
        if let Some(e) = v.get("error") {
            let desc = e["desc"].as_str().unwrap_or("an error without description");
            return Err(AgentError::Guest(desc.chars().take(500).collect()));
        }
        Err(AgentError::Protocol(
            "a reply with neither return nor error".into(),
        ))
    }

    /// `guest-ping`.
    pub fn ping(&mut self, timeout: Duration) -> Result<(), AgentError> {
        self.call("guest-ping", None, timeout).map(|_| ())
    }

    /// Run `argv` in the guest (no shell), wait for it to end within `timeout`, and return
    /// its exit status and output (each capped by the agent at 16 MiB).
    pub fn exec(&mut self, argv: &[&str], timeout: Duration) -> Result<AgentExec, AgentError> {
        self.exec_with_input(argv, None, timeout)
    }

    /// [`Agent::exec`] with `input` as the program's standard input.
    pub fn exec_with_input(
        &mut self,
        argv: &[&str],
        input: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<AgentExec, AgentError> {
        use base64::Engine;
        let until = Instant::now() + timeout;
        let (path, args) = argv
            .split_first()
            .ok_or_else(|| AgentError::Protocol("nothing to run".into()))?;
        let mut req = json!({"path": path, "arg": args, "capture-output": true});
        if let Some(i) = input {
            req["input-data"] = base64::engine::general_purpose::STANDARD.encode(i).into();
        }
        let r = self.call("guest-exec", Some(req), timeout)?;
        let pid = r["pid"]
            .as_i64()
            .ok_or_else(|| AgentError::Protocol(format!("guest-exec without a pid: {r}")))?;
        let mut pause = Duration::from_millis(10);
        loop {
            let left = Self::deadline_left(until, timeout)?;
            let v = self.call("guest-exec-status", Some(json!({"pid": pid})), left)?;
            let st: ExecStatus = serde_json::from_value(v)
                .map_err(|e| AgentError::Protocol(format!("guest-exec-status: {e}")))?;
            if st.exited {
                return Ok(AgentExec {
                    exit_code: st.exitcode,
                    signal: st.signal,
                    stdout: st
                        .out_data
                        .as_deref()
                        .map(b64)
                        .transpose()?
                        .unwrap_or_default(),
                    stderr: st
                        .err_data
                        .as_deref()
                        .map(b64)
                        .transpose()?
                        .unwrap_or_default(),
                });
            }
            std::thread::sleep(pause.min(left));
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }

    /// The contents of the guest's file `path`, at most `max` bytes (more is an error).
    pub fn read_file(
        &mut self,
        path: &str,
        max: usize,
        timeout: Duration,
    ) -> Result<Vec<u8>, AgentError> {
        let until = Instant::now() + timeout;
        let h = self.call(
            "guest-file-open",
            Some(json!({"path": path, "mode": "r"})),
            timeout,
        )?;
        let handle = h
            .as_i64()
            .ok_or_else(|| AgentError::Protocol(format!("guest-file-open gave {h}")))?;
        let mut out = Vec::new();
        let result = (|| loop {
            let left = Self::deadline_left(until, timeout)?;
            let r = self.call(
                "guest-file-read",
                Some(json!({"handle": handle, "count": READ_CHUNK})),
                left,
            )?;
            let data = b64(r["buf-b64"].as_str().unwrap_or(""))?;
            if out.len() + data.len() > max {
                return Err(AgentError::Protocol(format!(
                    "{path} is longer than {max} bytes"
                )));
            }
            out.extend_from_slice(&data);
            if r["eof"].as_bool().unwrap_or(true) || data.is_empty() {
                return Ok(());
            }
        })();
        let left = until
            .saturating_duration_since(Instant::now())
            .max(Duration::from_secs(1));
        let _ = self.call("guest-file-close", Some(json!({"handle": handle})), left);
        result.map(|()| out)
    }

    /// Ask the guest to power off (`guest-shutdown`, which sends no reply when it works).
    pub fn shutdown(&mut self, timeout: Duration) -> Result<(), AgentError> {
        let until = Instant::now() + timeout;
        let mut req = json!({"execute": "guest-shutdown", "arguments": {"mode": "powerdown"}})
            .to_string()
            .into_bytes();
        req.push(b'\n');
        self.send(&req, until, timeout)
    }
}

/// An id for `guest-sync-delimited`: any value nobody else is waiting for will do.
fn rand_id() -> u32 {
    let u = uuid::Uuid::new_v4();
    u32::from_le_bytes(u.as_bytes()[..4].try_into().unwrap_or([1, 2, 3, 4])) & 0x7fff_ffff
}

#[cfg(test)]
mod tests;
