//! Helpers shared by the integration tests: scratch directories, generated images, the CLI.
#![allow(dead_code)]

use sha2::{Digest, Sha256};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

#[allow(unused_imports)] // not every test binary compares codes
pub use vmpool::ResultCode as Code;

/// Where scratch stores and images go: `$VMPOOL_TEST_TMP`, else the system temp dir.
pub fn scratch() -> tempfile::TempDir {
    let base = std::env::var("VMPOOL_TEST_TMP")
        .map(PathBuf::from)
        .unwrap_or_else(|_| std::env::temp_dir());
    tempfile::Builder::new()
        .prefix("vmpool-test-")
        .tempdir_in(base)
        .expect("scratch dir")
}

/// A directory named by an environment variable that the test environment provides (a btrfs
/// or XFS mount, see tests/env/setup). These tests are `#[ignore]`d by default and run by
/// `make test`; run without the variable they fail, saying what is missing.
pub fn env_dir(var: &str, what: &str) -> PathBuf {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => PathBuf::from(v),
        _ => panic!(
            "{var} is not set: it must name {what}. `make test` sets it up (tests/env/setup)."
        ),
    }
}

/// Deterministic pseudo-random bytes.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A sparse raw image of `size` bytes with pattern data written at each offset in `data`.
pub fn make_raw(dir: &Path, name: &str, size: u64, data: &[(u64, usize)]) -> PathBuf {
    let p = dir.join(name);
    let f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&p)
        .unwrap();
    f.set_len(size).unwrap();
    for (i, (off, len)) in data.iter().enumerate() {
        f.write_all_at(&pattern(i as u64 + 1, *len), *off).unwrap();
    }
    f.sync_all().unwrap();
    p
}

/// A qcow2 image made by qemu-img (test set-up only; the library never runs qemu-img) from a
/// raw image like [`make_raw`]'s, optionally with compressed clusters.
pub fn make_qcow2(
    dir: &Path,
    name: &str,
    size: u64,
    data: &[(u64, usize)],
    compressed: bool,
) -> PathBuf {
    let raw = make_raw(dir, &format!("{name}.src.raw"), size, data);
    let p = dir.join(name);
    let mut cmd = Command::new("qemu-img");
    cmd.args(["convert", "-O", "qcow2"]);
    if compressed {
        cmd.arg("-c");
    }
    let st = cmd
        .arg(&raw)
        .arg(&p)
        .status()
        .expect("qemu-img (package qemu-utils) is needed to make test images");
    assert!(st.success());
    std::fs::remove_file(raw).unwrap();
    p
}

pub fn sha256_file(p: &Path) -> String {
    let mut f = File::open(p).unwrap();
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).unwrap();
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Bytes this thread read and wrote through syscalls so far (`rchar`, `wchar`).
pub fn thread_io() -> (u64, u64) {
    let s = std::fs::read_to_string("/proc/thread-self/io").unwrap();
    let get = |k: &str| {
        s.lines()
            .find_map(|l| l.strip_prefix(k))
            .map(|v| v.trim().parse::<u64>().unwrap())
            .unwrap()
    };
    (get("rchar:"), get("wchar:"))
}

/// Run vmpoolctl against a store.
pub fn ctl(uri: &str, args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vmpoolctl"));
    cmd.arg("--store").arg(uri).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn vmpoolctl");
    if let Some(input) = stdin {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    child.wait_with_output().unwrap()
}

/// Run vmpoolctl with the failpoint `point` set to kill it, and check that it died by SIGKILL
/// there (as with the OOM killer), leaving whatever that step leaves behind.
pub fn ctl_killed_at(uri: &str, point: &str, args: &[&str], stdin: Option<&str>) {
    use std::os::unix::process::ExitStatusExt;
    let fp = format!("{point}=kill");
    let out = ctl(uri, args, &[("VMPOOL_FAILPOINTS", &fp)], stdin);
    assert_eq!(out.status.signal(), Some(9), "{point}: {out:?}");
}

/// A VM spec as most tests use it: 2 vCPUs, 2 GiB, `disk_gib`.
pub fn payload(image: &uuid::Uuid, alias: &str, owner: &str, disk_gib: u64) -> vmpool::VmSpec {
    vmpool::VmSpec::new(*image)
        .alias(alias)
        .owner(owner)
        .vcpus(2)
        .ram_mib(2048)
        .disk_gib(disk_gib)
}

/// The same as the C ABI's JSON payload (for the CLI's standard input).
pub fn payload_json(image: &uuid::Uuid, alias: &str, owner: &str, disk_gib: u64) -> String {
    format!(
        r#"{{"alias":"{alias}","owner":"{owner}","image_uuid":"{image}","vcpus":2,"ram_mib":2048,"disk_gib":{disk_gib}}}"#
    )
}

/// Calls through the C ABI's JSON edge (`ffi::wire`): the JSON is parsed exactly as
/// `vmpool_vm_create` and `vmpool_image_import` parse it, then the typed API is called. Tests
/// of JSON refusals go through here.
pub trait JsonEdge {
    /// `vmpool_image_import` with a manifest.
    fn import_json(
        &self,
        path: &Path,
        manifest: Option<&str>,
        progress: Option<vmpool::store::Progress>,
    ) -> vmpool::Result<vmpool::Image>;
    /// `vmpool_vm_create` with a payload.
    fn create_json(&self, payload: &str) -> vmpool::Result<vmpool::Vm>;
}

impl JsonEdge for vmpool::Store {
    fn import_json(
        &self,
        path: &Path,
        manifest: Option<&str>,
        progress: Option<vmpool::store::Progress>,
    ) -> vmpool::Result<vmpool::Image> {
        let req = vmpool::ffi::wire::import_request(manifest)?;
        self.import_image(path, &req, progress)
    }
    fn create_json(&self, payload: &str) -> vmpool::Result<vmpool::Vm> {
        self.create_vm(&vmpool::ffi::wire::vm_spec(payload)?)
    }
}

/// A VM's JSON as the C ABI returns it.
pub fn vm_json(v: &vmpool::Vm) -> String {
    vmpool::ffi::wire::to_string(&vmpool::ffi::wire::VmOut::from(v)).unwrap()
}

/// An image's JSON as the C ABI returns it.
pub fn image_json(m: &vmpool::Image) -> String {
    vmpool::ffi::wire::to_string(&vmpool::ffi::wire::ImageOut::from(m)).unwrap()
}

/// Virtual size of a VM disk: the qcow2 header's size, or the file or device size.
pub fn disk_size(path: &str, format: vmpool::DiskFormat) -> u64 {
    let p = vmpool::driver::zfs::resolve_device(path).unwrap_or_else(|_| PathBuf::from(path));
    let f = File::open(&p).unwrap_or_else(|e| panic!("open {}: {e}", p.display()));
    match format {
        vmpool::DiskFormat::Qcow2 => vmpool::image::qcow2::read_header(&f).unwrap().size,
        vmpool::DiskFormat::Raw => vmpool::fsutil::byte_size(&f).unwrap(),
    }
}

/// Whether a VM disk shows the guest the same bytes as the raw image `src`, and zeros past
/// its end. qcow2 disks are compared by `qemu-img compare` (test tooling; it follows the
/// backing chain); raw disks (files, zvols) are compared where `src` has data and sampled in
/// its holes and past its end, so that a 20 GiB zvol is not read whole under emulation.
pub fn same_content(src: &Path, disk: &str, format: vmpool::DiskFormat) -> bool {
    if format == vmpool::DiskFormat::Qcow2 {
        let out = Command::new("qemu-img")
            .args(["compare", "-F", "qcow2"])
            .arg(src)
            .arg(disk)
            .output()
            .expect("qemu-img");
        if !out.status.success() {
            eprintln!(
                "qemu-img compare: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        return out.status.success();
    }
    let dst_path =
        vmpool::driver::zfs::resolve_device(disk).unwrap_or_else(|_| PathBuf::from(disk));
    let (a, b) = (File::open(src).unwrap(), File::open(&dst_path).unwrap());
    let (alen, blen) = (
        vmpool::fsutil::byte_size(&a).unwrap(),
        vmpool::fsutil::byte_size(&b).unwrap(),
    );
    if blen < alen {
        eprintln!("{disk} is {blen} bytes, smaller than {alen}");
        return false;
    }
    let read = |f: &File, off: u64, len: usize| {
        let mut buf = vec![0u8; len];
        f.read_exact_at(&mut buf, off).unwrap();
        buf
    };
    for (off, len) in vmpool::fsutil::data_extents(&a, alen).unwrap() {
        let mut o = off;
        while o < off + len {
            let n = (off + len - o).min(1 << 20) as usize;
            if read(&a, o, n) != read(&b, o, n) {
                eprintln!("{disk} differs from {} in the 1 MiB at {o}", src.display());
                return false;
            }
            o += n as u64;
        }
    }
    // Holes of the source and the grown part must read as zeros.
    let samples: Vec<u64> = (0..64)
        .map(|i| (blen / 64) * i)
        .chain([blen - 4096])
        .collect();
    let data = vmpool::fsutil::data_extents(&a, alen).unwrap();
    for s in samples {
        let in_data = s < alen && data.iter().any(|(o, l)| s + 4096 > *o && s < o + l);
        if !in_data && read(&b, s, 4096).iter().any(|&x| x != 0) {
            eprintln!("{disk} is not zero at {s}");
            return false;
        }
    }
    true
}

/// The bootable test template (built once, cached by the script); `VMPOOL_TEST_IMAGE` names a
/// ready one instead (the guest harness has neither dpkg nor /dev/fd to build one).
pub fn test_image() -> PathBuf {
    if let Some(p) = std::env::var_os("VMPOOL_TEST_IMAGE") {
        return PathBuf::from(p);
    }
    let out = Command::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scripts/make-test-image"
    ))
    .output()
    .expect("scripts/make-test-image");
    assert!(
        out.status.success(),
        "make-test-image: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// Kill every VM of a store (test clean-up, also when a test fails: QEMU processes would
/// otherwise outlive the scratch directory they run from).
pub fn kill_all(s: &vmpool::Store) {
    if let Ok(vms) = s.vms(None) {
        for v in vms {
            let _ = s.kill_vm(v.uuid);
        }
    }
}

/// A scratch `dir:` store running VMs under TCG, with the bootable test template imported as
/// `image`. Its VMs are killed when it is dropped (also when a test fails).
pub struct GuestStore {
    pub tmp: tempfile::TempDir,
    pub uri: String,
    pub s: vmpool::Store,
    pub image: vmpool::Image,
}

/// A [`GuestStore`]; `options` are appended to its URI (`&zone=on`, ...), with `{tmp}`
/// replaced by its scratch directory.
pub fn guest_store(options: &str) -> GuestStore {
    let tmp = scratch();
    let options = options.replace("{tmp}", &tmp.path().display().to_string());
    let uri = format!("dir:{}/s?accel=tcg{options}", tmp.path().display());
    let s = vmpool::Store::open(Some(&uri)).unwrap();
    let image = s
        .import_image(
            &test_image(),
            &vmpool::ImportRequest::default().name("test-guest"),
            None,
        )
        .unwrap();
    GuestStore { tmp, uri, s, image }
}

/// The VM's serial log (its last 16 MiB).
pub fn serial_log(s: &vmpool::Store, vm: uuid::Uuid) -> String {
    String::from_utf8_lossy(&s.vm_log(vm, 1 << 24).unwrap_or_default()).into_owned()
}

/// Wait (for `timeout` at most, while the VM stays active) until its serial log holds
/// `needle` `n` times; the log. A failure shows the log without the test guest's ticks.
pub fn wait_serial_log(
    s: &vmpool::Store,
    vm: uuid::Uuid,
    needle: &str,
    n: usize,
    timeout: std::time::Duration,
) -> String {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let log = serial_log(s, vm);
        if log.matches(needle).count() >= n {
            return log;
        }
        let st = s.vm(vm).unwrap();
        if std::time::Instant::now() >= deadline || !st.state.is_active() {
            let lines: Vec<&str> = log.lines().filter(|l| !l.contains("tick=")).collect();
            panic!(
                "VM {vm} ({}): no {n}x {needle:?} in its log; state {:?} {:?}; log without ticks:\n{}",
                st.alias,
                st.state,
                st.last_exit,
                lines[lines.len().saturating_sub(60)..].join("\n")
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

impl GuestStore {
    /// The VM's serial log.
    pub fn log(&self, vm: &uuid::Uuid) -> String {
        serial_log(&self.s, *vm)
    }

    /// Wait (two minutes at most, while the VM stays active) until its serial log holds `needle`
    /// `n` times; the log.
    pub fn wait_log(&self, vm: &uuid::Uuid, needle: &str, n: usize) -> String {
        wait_serial_log(&self.s, *vm, needle, n, std::time::Duration::from_secs(120))
    }
}

impl Drop for GuestStore {
    fn drop(&mut self) {
        kill_all(&self.s);
    }
}

/// The failpoints (`fail_point!("name")`) of a source file of the crate (`src/...`), in order.
pub fn failpoints_in(file: &str) -> Vec<String> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .split("fail_point!(\"")
        .skip(1)
        .map(|p| p.split('"').next().unwrap().to_owned())
        .collect()
}

/// Run the CLI stopped at `point` by `action` (`kill` or `error`) and check it ended that way.
pub fn ctl_failing_at(uri: &str, point: &str, action: &str, args: &[&str], stdin: Option<&str>) {
    use std::os::unix::process::ExitStatusExt;
    let fp = format!("{point}={action}");
    let out = ctl(uri, args, &[("VMPOOL_FAILPOINTS", &fp)], stdin);
    match action {
        "kill" => assert_eq!(out.status.signal(), Some(9), "{fp}: {out:?}"),
        _ => assert_eq!(
            out.status.code(),
            Some(Code::VMPOOL_RESULT_INTERNAL as i32),
            "{fp}: {out:?}"
        ),
    }
}

/// Type `line` and Enter on the test guest's console keyboard (QMP `send-key`), one key at a
/// time, each acknowledged by the guest on its serial console (`typed=N`): an emulated PS/2
/// keyboard drops keys sent faster than the guest takes them, so each key waits for its
/// acknowledgement (and is sent again only if none came in a long while: it was dropped).
pub fn type_line(s: &vmpool::Store, v: uuid::Uuid, line: &str) {
    use std::time::{Duration, Instant};
    let mut q =
        vmpool::vm::qmp::Qmp::connect(&s.qmp_socket_path(v), Duration::from_secs(10)).unwrap();
    let log = || String::from_utf8_lossy(&s.vm_log(v, 1 << 24).unwrap()).into_owned();
    let keys: Vec<(String, String)> = line
        .chars()
        .enumerate()
        .map(|(i, ch)| {
            let key = match ch {
                ' ' => "spc".to_owned(),
                '.' => "dot".to_owned(),
                '-' => "minus".to_owned(),
                c if c.is_ascii_alphanumeric() => c.to_ascii_lowercase().to_string(),
                c => panic!("type_line cannot type {c:?}"),
            };
            (key, format!("VMPOOL-TEST-GUEST: typed={}", i + 1))
        })
        .chain([(
            "ret".to_owned(),
            "VMPOOL-TEST-GUEST: typed=enter".to_owned(),
        )])
        .collect();
    let acks = |ack: &str| log().lines().filter(|l| l.trim() == ack).count();
    for (key, ack) in keys {
        let seen = acks(&ack);
        let mut tries = 0;
        'sent: loop {
            tries += 1;
            assert!(
                tries <= 3,
                "the guest never acknowledged key {key:?} of {line:?}; its log:\n{}",
                log()
                    .lines()
                    .filter(|l| !l.contains("tick="))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            q.execute(
                "send-key",
                Some(serde_json::json!({"keys": [{"type": "qcode", "data": key}]})),
                Duration::from_secs(10),
            )
            .unwrap();
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if acks(&ack) > seen {
                    break 'sent;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// A small deterministic random source for tests that act at random moments: `next(n)` is in
/// `0..n` (xorshift64 from `seed`).
pub fn xorshift(seed: u64) -> impl FnMut(u64) -> u64 {
    let mut x = seed | 1;
    move |n| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    }
}

/// A seed from the clock, printed so that a failing run can be told apart.
pub fn clock_seed() -> u64 {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    eprintln!("seed {seed}");
    seed
}
