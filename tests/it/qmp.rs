//! The QMP client (`vmpool::vm::qmp`) against a real QEMU (`qemu-system-x86_64 -accel tcg -S`, no
//! guest). Written with the client; kept as its own test target.

#[path = "../qmp/qemu.rs"]
mod qemu;

use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::net::UnixListener;
use std::time::{Duration, Instant};

use qemu::{Qemu, CALL, START};
use serde_json::{json, Value};
use vmpool::vm::qmp::{Message, Qmp, QmpError};

#[test]
fn status_version_and_large_reply() {
    let qemu = Qemu::start(&[]);
    let mut qmp = qemu.connect();
    assert!(
        qmp.version().starts_with("10."),
        "version {}",
        qmp.version()
    );

    let status = qmp.execute("query-status", None, CALL).unwrap();
    assert_eq!(status["running"], json!(false));
    assert_eq!(status["status"], json!("prelaunch"));

    // Close-on-exec: a child we spawn sees no socket of ours (std does not close inherited
    // fds itself; the flag is all there is).
    let out = std::process::Command::new("ls")
        .args(["-l", "/proc/self/fd"])
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(!listing.contains("socket:"), "{listing}");

    let version = qmp.execute("query-version", None, CALL).unwrap();
    assert_eq!(version["qemu"]["major"], json!(10));
    assert_eq!(
        qmp.version(),
        format!(
            "{}.{}.{}",
            version["qemu"]["major"], version["qemu"]["minor"], version["qemu"]["micro"]
        )
    );

    // The schema is QEMU's biggest reply: it arrives in many reads.
    let schema = qmp.execute("query-qmp-schema", None, CALL).unwrap();
    let bytes = serde_json::to_vec(&schema).unwrap().len();
    println!(
        "query-qmp-schema: {} entries, {bytes} bytes",
        schema.as_array().unwrap().len()
    );
    assert!(bytes > 100_000);

    // Still in step afterwards.
    let status = qmp.execute("query-status", None, CALL).unwrap();
    assert_eq!(status["status"], json!("prelaunch"));
}

#[test]
fn command_errors() {
    let qemu = Qemu::start(&[]);
    let mut qmp = qemu.connect();
    match qmp.execute("nonexistent", None, CALL) {
        Err(QmpError::Command { class, desc }) => {
            assert_eq!(class, "CommandNotFound");
            assert!(desc.contains("nonexistent"), "{desc}");
        }
        other => panic!("expected CommandNotFound, got {other:?}"),
    }
    match qmp.execute("query-status", Some(json!([])), CALL) {
        Err(QmpError::Command { class, .. }) => assert_eq!(class, "GenericError"),
        other => panic!("expected GenericError, got {other:?}"),
    }
    match qmp.execute("getfd", Some(json!({"fdname": "none"})), CALL) {
        Err(QmpError::Command { class, desc }) => {
            assert_eq!(class, "GenericError");
            println!("getfd without an fd: {desc}");
        }
        other => panic!("expected an error for getfd without fd, got {other:?}"),
    }
    assert_eq!(
        qmp.execute("query-status", None, CALL).unwrap()["running"],
        json!(false)
    );
}

#[test]
fn cont_and_stop_events() {
    let qemu = Qemu::start(&[]);
    let mut qmp = qemu.connect();
    assert!(qmp.take_events().is_empty());

    qmp.execute("cont", None, CALL).unwrap();
    match qmp.wait_event("RESUME", CALL).unwrap() {
        Message::Event {
            name,
            data,
            seconds,
            micros,
        } => {
            assert_eq!(name, "RESUME");
            assert_eq!(data, Value::Null);
            assert!(seconds > 1_600_000_000, "{seconds}");
            assert!((0..1_000_000).contains(&micros), "{micros}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        qmp.execute("query-status", None, CALL).unwrap()["running"],
        json!(true)
    );

    qmp.execute("stop", None, CALL).unwrap();
    assert!(matches!(
        qmp.wait_event("STOP", CALL).unwrap(),
        Message::Event { .. }
    ));
    let status = qmp.execute("query-status", None, CALL).unwrap();
    assert_eq!(status["status"], json!("paused"));

    // Events not waited for are kept, in order, for take_events.
    qmp.execute("cont", None, CALL).unwrap();
    qmp.execute("stop", None, CALL).unwrap();
    let names: Vec<String> = qmp
        .take_events()
        .into_iter()
        .map(|m| match m {
            Message::Event { name, .. } => name,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(names, ["RESUME", "STOP"]);
    assert!(qmp.take_events().is_empty());

    // Nothing comes: a timeout, not a hang.
    let t = Instant::now();
    assert!(matches!(
        qmp.wait_event("RESUME", Duration::from_millis(200)),
        Err(QmpError::Timeout { .. })
    ));
    assert!(t.elapsed() < Duration::from_secs(2));
}

#[test]
fn quit_then_closed() {
    let mut qemu = Qemu::start(&[]);
    let mut qmp = qemu.connect();
    let t = Instant::now();
    // QEMU usually answers before it goes; either way is fine.
    match qmp.execute("quit", None, CALL) {
        Ok(v) => assert_eq!(v, json!({})),
        Err(QmpError::Closed) => {}
        Err(e) => panic!("quit: {e}"),
    }
    // SHUTDOWN came before quit's reply and is buffered.
    match qmp.wait_event("SHUTDOWN", CALL).unwrap() {
        Message::Event { data, .. } => assert_eq!(data["reason"], json!("host-qmp-quit")),
        other => panic!("{other:?}"),
    }
    for _ in 0..3 {
        let r = qmp.execute("query-status", None, CALL);
        assert!(matches!(r, Err(QmpError::Closed)), "{r:?}");
    }
    assert!(matches!(
        qmp.wait_event("STOP", CALL),
        Err(QmpError::Closed)
    ));
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert!(qemu.wait_exit(Duration::from_secs(10)), "qemu did not exit");

    // A QEMU that is gone entirely: the stale socket file refuses connections.
    let t = Instant::now();
    match Qmp::connect(&qemu.sock, Duration::from_millis(300)) {
        Err(QmpError::Timeout { what, .. }) => println!("connect after exit: {what}"),
        other => panic!("{other:?}"),
    }
    assert!(t.elapsed() < Duration::from_secs(2));
}

#[test]
fn killed_qemu_is_closed() {
    let qemu = Qemu::start(&[]);
    let mut qmp = qemu.connect();
    qemu.signal("-KILL");
    std::thread::sleep(Duration::from_millis(100));
    let r = qmp.execute("query-status", None, CALL);
    assert!(matches!(r, Err(QmpError::Closed)), "{r:?}");
}

#[test]
fn stopped_qemu_times_out_then_recovers() {
    let qemu = Qemu::start(&[]);
    let mut qmp = qemu.connect();
    qemu.signal("-STOP");
    let bound = Duration::from_millis(300);
    let t = Instant::now();
    let r = qmp.execute("query-version", None, bound);
    let took = t.elapsed();
    match r {
        Err(QmpError::Timeout { what, after }) => {
            assert_eq!(after, bound);
            println!("timeout: {what} after {took:?}");
        }
        other => panic!("expected Timeout, got {other:?}"),
    }
    assert!(took >= bound, "{took:?}");
    assert!(took < bound + Duration::from_millis(500), "{took:?}");
    // A second connection to a stopped QEMU: the kernel accepts, no greeting comes.
    let t = Instant::now();
    assert!(matches!(
        Qmp::connect(&qemu.sock, bound),
        Err(QmpError::Timeout { .. })
    ));
    assert!(t.elapsed() < bound + Duration::from_millis(500));

    qemu.signal("-CONT");
    // The late reply to query-version is skipped by id; this call gets its own reply.
    let status = qmp.execute("query-status", None, CALL).unwrap();
    assert_eq!(status["status"], json!("prelaunch"), "{status}");
    let version = qmp.execute("query-version", None, CALL).unwrap();
    assert_eq!(version["qemu"]["major"], json!(10));
}

#[test]
fn one_client_at_a_time() {
    let qemu = Qemu::start(&[]);
    let first = qemu.connect();
    let t = Instant::now();
    match Qmp::connect(&qemu.sock, Duration::from_millis(400)) {
        Err(QmpError::Timeout { what, .. }) => println!("second client: {what}"),
        other => panic!("expected Timeout, got {other:?}"),
    }
    assert!(t.elapsed() < Duration::from_secs(2));
    drop(first);
    let mut second = Qmp::connect(&qemu.sock, START).unwrap();
    second.execute("query-status", None, CALL).unwrap();
}

#[test]
fn connect_gives_up_on_missing_or_dead_socket() {
    let dir = std::env::temp_dir().join(format!("qmp-missing-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let t = Instant::now();
    match Qmp::connect(&dir.join("nope.sock"), Duration::from_millis(200)) {
        Err(QmpError::Timeout { what, after }) => {
            assert_eq!(after, Duration::from_millis(200));
            assert!(what.contains("No such file"), "{what}");
        }
        other => panic!("{other:?}"),
    }
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(200) && took < Duration::from_secs(1),
        "{took:?}"
    );

    // A socket file nobody listens on any more.
    let dead = dir.join("dead.sock");
    drop(UnixListener::bind(&dead).unwrap());
    match Qmp::connect(&dead, Duration::from_millis(100)) {
        Err(QmpError::Timeout { what, .. }) => assert!(what.contains("refused"), "{what}"),
        other => panic!("{other:?}"),
    }

    // A path too long for a unix socket is an immediate error, not a wait.
    let long = dir.join("x".repeat(200));
    let t = Instant::now();
    assert!(matches!(
        Qmp::connect(&long, Duration::from_secs(5)),
        Err(QmpError::Io { .. })
    ));
    assert!(t.elapsed() < Duration::from_secs(1));

    // Something that is not QEMU: a peer that speaks garbage, then one that says nothing.
    let fake = dir.join("fake.sock");
    let listener = UnixListener::bind(&fake).unwrap();
    let server = std::thread::spawn(move || {
        use std::io::Write;
        let (mut c, _) = listener.accept().unwrap();
        c.write_all(b"hello\r\n").unwrap();
        let (c2, _) = listener.accept().unwrap();
        std::thread::sleep(Duration::from_millis(500));
        drop((c, c2));
    });
    assert!(matches!(
        Qmp::connect(&fake, Duration::from_secs(5)),
        Err(QmpError::Protocol(_))
    ));
    assert!(matches!(
        Qmp::connect(&fake, Duration::from_millis(200)),
        Err(QmpError::Timeout { .. })
    ));
    server.join().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Poll `query-migrate` (and collect MIGRATION events) until the migration ends.
fn wait_migration(qmp: &mut Qmp) -> (Value, Vec<String>) {
    let until = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    loop {
        let info = qmp.execute("query-migrate", None, CALL).unwrap();
        let status = info["status"].as_str().unwrap_or("").to_owned();
        if status == "completed" || status == "failed" || status == "cancelled" {
            // Every event up to completion has been sent by now.
            loop {
                match qmp.wait_event("MIGRATION", Duration::from_millis(200)) {
                    Ok(Message::Event { data, .. }) => {
                        let s = data["status"].as_str().unwrap_or("").to_owned();
                        let done = s == status;
                        seen.push(s);
                        if done {
                            break;
                        }
                    }
                    Ok(other) => panic!("{other:?}"),
                    Err(QmpError::Timeout { .. }) => break,
                    Err(e) => panic!("{e}"),
                }
            }
            return (info, seen);
        }
        assert!(Instant::now() < until, "migration stuck: {info}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn migrate_with(qmp: &mut Qmp, uri: &str) -> (Value, Vec<String>) {
    qmp.execute(
        "migrate-set-capabilities",
        Some(json!({"capabilities": [{"capability": "events", "state": true}]})),
        CALL,
    )
    .unwrap();
    qmp.execute("migrate", Some(json!({ "uri": uri })), CALL)
        .unwrap();
    wait_migration(qmp)
}

#[test]
fn send_fd_and_migrate_to_fd() {
    // spawn=deny as vmpool runs it: no exec: migration, only what we hand over.
    let qemu = Qemu::start(&["-sandbox", "on,spawn=deny"]);
    let mut qmp = qemu.connect();
    let path = qemu.dir.join("state-fd");
    let file = File::create(&path).unwrap();
    let t = Instant::now();
    qmp.getfd("mig", file.as_fd()).unwrap();
    drop(file); // QEMU holds its own copy.
    let (info, events) = migrate_with(&mut qmp, "fd:mig");
    let took = t.elapsed();
    assert_eq!(info["status"], json!("completed"), "{info}");
    assert_eq!(
        events.last().map(String::as_str),
        Some("completed"),
        "{events:?}"
    );
    let size = std::fs::metadata(&path).unwrap().len();
    println!(
        "fd: migration of a 64 MiB guest: {took:?}, state {size} bytes, events {events:?}, \
         QEMU total-time {} ms",
        info["total-time"]
    );
    assert!(size > 0);
    // QEMU publishes "completed" from its migration thread, then sets the run state from
    // finish-migrate to postmigrate: a query between the two sees finish-migrate (a fresh-clone
    // CI run did). The guest stays stopped throughout; it ends in postmigrate.
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let st = qmp.execute("query-status", None, CALL).unwrap()["status"].clone();
        if st == json!("postmigrate") {
            break;
        }
        assert_eq!(st, json!("finish-migrate"), "after the migration");
        assert!(
            Instant::now() < until,
            "still {st} 10 s after the migration"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // The fd name was used up by the migration; another getfd with the same name is fine.
    let again = File::create(qemu.dir.join("again")).unwrap();
    qmp.getfd("mig", again.as_fd()).unwrap();
    qmp.execute("closefd", Some(json!({"fdname": "mig"})), CALL)
        .unwrap();
    let log = qemu.log();
    if !log.trim().is_empty() {
        println!("qemu stderr: {}", log.trim());
    }
}

#[test]
fn add_fd_and_migrate_to_file() {
    let qemu = Qemu::start(&["-sandbox", "on,spawn=deny"]);
    let mut qmp = qemu.connect();
    let path = qemu.dir.join("state-file");
    let file = File::create(&path).unwrap();
    let t = Instant::now();
    let set = qmp.add_fd(file.as_fd()).unwrap();
    drop(file);
    let (info, _) = migrate_with(&mut qmp, &format!("file:/dev/fdset/{set},offset=0"));
    let took = t.elapsed();
    assert_eq!(info["status"], json!("completed"), "{info}");
    let size = std::fs::metadata(&path).unwrap().len();
    println!("file:/dev/fdset/{set} migration: {took:?}, state {size} bytes");
    assert!(size > 0);
    assert!(qemu.log().trim().is_empty(), "qemu stderr: {}", qemu.log());
}
