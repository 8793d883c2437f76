//! The QMP client against scripted peers and malformed input.
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
        parse_message(br#"{"timestamp": {"seconds": -1, "microseconds": -1}, "event": "STOP"}"#)
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

#[test]
fn blockstats_from_a_reply_a_qemu_may_forge() {
    use super::commands::parse_blockstats;
    let drive = |device: &str, qdev: &str, node: &str, rd: Value| {
        json!({"device": device, "qdev": qdev, "node-name": node,
               "stats": {"rd_bytes": rd, "wr_bytes": 2, "rd_operations": 3, "wr_operations": 4}})
    };
    let got = parse_blockstats(&json!([
        drive(
            "disk0",
            "/machine/peripheral-anon/device[1]/virtio-backend",
            "#block1",
            json!(1)
        ),
        drive(
            "",
            "/machine/peripheral/home-x/virtio-backend",
            "home-node",
            json!(5)
        ),
        drive("", "", "node_1", json!(u64::MAX)),
    ]))
    .unwrap();
    let ids: Vec<_> = got.iter().map(|b| b.id.as_str()).collect();
    assert_eq!(ids, ["disk0", "home-x", "node_1"]);
    assert_eq!((got[0].rd_bytes, got[0].wr_operations), (1, 4));
    assert_eq!(got[2].rd_bytes, u64::MAX);
    // A counter that is no count, a name that is no plain name, no list: refused by name.
    for bad in [
        json!([drive("disk0", "", "", json!(-1))]),
        json!([drive("disk0", "", "", json!("12"))]),
        json!([drive("disk0", "", "", json!(1.5))]),
        json!([drive("a b\u{1b}[2J", "", "", json!(1))]),
        json!([drive(&"x".repeat(65), "", "", json!(1))]),
        json!([{"device": "disk0"}]),
        json!({"device": "disk0"}),
    ] {
        assert!(
            matches!(parse_blockstats(&bad), Err(QmpError::Protocol(_))),
            "{bad}"
        );
    }
    // A flood of drives is cut at BLOCKSTATS_MAX.
    let many: Vec<Value> = (0..1000)
        .map(|i| drive(&format!("d{i}"), "", "", json!(1)))
        .collect();
    assert_eq!(
        parse_blockstats(&Value::Array(many)).unwrap().len(),
        super::BLOCKSTATS_MAX
    );
}
