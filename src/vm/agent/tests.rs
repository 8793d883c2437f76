//! The client against a scripted agent on the other end of a socket pair: framing, resync
//! after stale bytes, errors, bounds.

use super::*;
use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixStream;
use std::thread;

const T: Duration = Duration::from_secs(5);

/// An agent that answers each request line with `answer(request)` (None: no answer).
fn fake(
    stale: &'static [u8],
    answer: impl Fn(&Value) -> Option<String> + Send + 'static,
) -> UnixStream {
    let (ours, theirs) = UnixStream::pair().unwrap();
    thread::spawn(move || {
        let mut w = theirs.try_clone().unwrap();
        w.write_all(stale).unwrap();
        let mut r = BufReader::new(theirs);
        let mut line = Vec::new();
        while r.read_until(b'\n', &mut line).unwrap_or(0) > 0 {
            let text: Vec<u8> = line.iter().copied().filter(|b| *b != 0xFF).collect();
            line.clear();
            let Ok(req) = serde_json::from_slice::<Value>(&text) else {
                continue;
            };
            if req["execute"] == "guest-sync-delimited" {
                let id = &req["arguments"]["id"];
                let mut out = vec![0xFF];
                out.extend_from_slice(format!("{{\"return\": {id}}}\n").as_bytes());
                w.write_all(&out).unwrap();
                continue;
            }
            if let Some(a) = answer(&req) {
                w.write_all(a.as_bytes()).unwrap();
                w.write_all(b"\n").unwrap();
            }
        }
    });
    ours
}

#[test]
fn sync_drops_stale_bytes_and_ping_works() {
    let s = fake(b"{\"return\": {}}\ngarbage\xFEnot json\n", |_| {
        Some("{\"return\": {}}".into())
    });
    let mut a = Agent::from_stream(s, T).unwrap();
    a.ping(T).unwrap();
}

#[test]
fn exec_collects_output_and_status() {
    let s = fake(b"", |req| {
        match req["execute"].as_str()? {
        "guest-exec" => Some("{\"return\": {\"pid\": 7}}".into()),
        // "hello\n" and "oops" in base64.
        "guest-exec-status" => Some(
            "{\"return\": {\"exited\": true, \"exitcode\": 3, \"out-data\": \"aGVsbG8K\", \"err-data\": \"b29wcw==\"}}".into(),
        ),
        _ => None,
    }
    });
    let mut a = Agent::from_stream(s, T).unwrap();
    let r = a.exec(&["/bin/echo", "hello"], T).unwrap();
    assert_eq!(
        (r.exit_code, r.stdout.as_slice(), r.stderr.as_slice()),
        (Some(3), &b"hello\n"[..], &b"oops"[..])
    );
}

#[test]
fn guest_errors_and_silence_are_named() {
    let s = fake(b"", |req| match req["execute"].as_str()? {
        "guest-file-open" => {
            Some("{\"error\": {\"class\": \"GenericError\", \"desc\": \"no such file\"}}".into())
        }
        _ => None,
    });
    let mut a = Agent::from_stream(s, T).unwrap();
    let e = a.read_file("/nope", 10, T).unwrap_err();
    assert!(
        matches!(&e, AgentError::Guest(m) if m.contains("no such file")),
        "{e}"
    );
    let e = a.ping(Duration::from_millis(200)).unwrap_err();
    assert!(matches!(e, AgentError::Timeout(_)), "{e}");
}

#[test]
fn a_file_longer_than_allowed_is_refused() {
    let s = fake(b"", |req| match req["execute"].as_str()? {
        "guest-file-open" => Some("{\"return\": 1}".into()),
        // 12 bytes per read, never at its end.
        "guest-file-read" => Some(
            "{\"return\": {\"count\": 12, \"buf-b64\": \"MDEyMzQ1Njc4OWFi\", \"eof\": false}}"
                .into(),
        ),
        "guest-file-close" => Some("{\"return\": {}}".into()),
        _ => None,
    });
    let mut a = Agent::from_stream(s, T).unwrap();
    let e = a.read_file("/big", 30, T).unwrap_err();
    assert!(
        matches!(&e, AgentError::Protocol(m) if m.contains("longer than 30")),
        "{e}"
    );
}

#[test]
fn a_line_without_end_is_cut_off() {
    let (ours, theirs) = UnixStream::pair().unwrap();
    thread::spawn(move || {
        let mut w = theirs;
        let mut r = BufReader::new(w.try_clone().unwrap());
        let mut line = Vec::new();
        r.read_until(b'\n', &mut line).unwrap();
        w.write_all(&[0xFF]).unwrap();
        let junk = vec![b'x'; 1 << 20];
        for _ in 0..(MAX_LINE >> 20) + 2 {
            if w.write_all(&junk).is_err() {
                break;
            }
        }
    });
    let e = Agent::from_stream(ours, Duration::from_secs(20)).unwrap_err();
    assert!(
        matches!(&e, AgentError::Protocol(m) if m.contains("longer than")),
        "{e}"
    );
}
