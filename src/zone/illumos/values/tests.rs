use super::*;
use crate::zone::Limits;

fn spec() -> ZoneSpec {
    ZoneSpec {
        vm: Uuid::parse_str("0b9b3c9e-5a47-4d61-9f1e-2f0f6a3b1c2d").unwrap(),
        hostname: "web-1".into(),
        uid: 5000,
        gid: 5000,
        groups: vec![],
        limits: Limits::for_vm(2, 1024, false, None, None, None),
        writable: vec![PathBuf::from("/var/vmpool/run/x/qemu")],
        readable: vec![
            PathBuf::from("/var/vmpool/images/i.qcow2"),
            PathBuf::from("/usr/share/qemu/OVMF_CODE.fd"),
        ],
        devices: vec![
            PathBuf::from("/dev/kvm"),
            PathBuf::from("/dev/zvol/tank/vmpool/vms/x-disk0"),
        ],
        run_dir: PathBuf::from("/var/vmpool/run/x"),
        vcpus: 2,
        ram_mib: 1024,
    }
}

fn is_dir(p: &Path) -> bool {
    p.extension().is_none()
}

#[test]
fn name_and_paths() {
    let s = spec();
    let n = zone_name(&s.vm);
    assert_eq!(n, "vmpool-0b9b3c9e-5a47-4d61-9f1e-2f0f6a3b1c2d");
    assert!(valid_zone_name(&n));
    assert_eq!(zonepath(&s), PathBuf::from("/var/vmpool/run/x/zone"));
    assert_eq!(zone_root(&s), PathBuf::from("/var/vmpool/run/x/zone/root"));
    assert_eq!(
        in_root(&zone_root(&s), Path::new("/a/b")),
        PathBuf::from("/var/vmpool/run/x/zone/root/a/b")
    );
}

#[test]
fn zone_names_follow_libzonecfg() {
    for bad in [
        "",
        "global",
        "SUNWblank",
        "-x",
        ".x",
        "a b",
        "a/b",
        &"a".repeat(64),
    ] {
        assert!(!valid_zone_name(bad), "{bad:?}");
    }
    for good in ["a", "vm.1_x-2", &"a".repeat(63)] {
        assert!(valid_zone_name(good), "{good:?}");
    }
}

#[test]
fn attributes_as_vmadm_writes_them() {
    let a = attrs(&spec());
    assert_eq!(
        a,
        vec![
            ("ram", AttrType::String, "1024".to_string()),
            ("vcpus", AttrType::String, "2".to_string()),
            (
                "vmpool-vm",
                AttrType::String,
                "0b9b3c9e-5a47-4d61-9f1e-2f0f6a3b1c2d".to_string()
            ),
            ("hostname", AttrType::String, "web-1".to_string()),
        ]
    );
    let mut s = spec();
    s.hostname.clear();
    assert!(attrs(&s).iter().all(|(n, _, _)| *n != "hostname"));
    assert_eq!(AttrType::Uint.as_str(), "uint");
    assert_eq!(AttrType::Boolean.as_str(), "boolean");
}

#[test]
fn rctls_from_limits() {
    let s = spec();
    let mem = (1024 + 192) << 20;
    let r = rctls(&s);
    let got: Vec<(&str, u64)> = r.iter().map(|r| (r.name, r.limit)).collect();
    assert_eq!(
        got,
        vec![
            ("zone.cpu-cap", 200),
            ("zone.max-physical-memory", mem),
            ("zone.max-locked-memory", mem),
            ("zone.max-swap", mem),
            ("zone.max-lwps", 100),
        ]
    );
    assert!(r
        .iter()
        .all(|r| r.privilege.as_str() == "privileged" && r.action.as_str() == "deny"));
}

#[test]
fn rctl_floors_and_a_zero_cap() {
    let mut s = spec();
    s.limits.cpu_pct = 0;
    s.limits.memory_bytes = 1000;
    s.limits.pids = 4096;
    let r = rctls(&s);
    assert!(r.iter().all(|r| r.name != "zone.cpu-cap"));
    let get = |n: &str| r.iter().find(|r| r.name == n).unwrap().limit;
    assert_eq!(get("zone.max-physical-memory"), MIN_PHYSICAL_MEMORY);
    assert_eq!(get("zone.max-swap"), MIN_SWAP);
    assert_eq!(get("zone.max-lwps"), 4096);
    s.limits.cpu_pct = 150;
    assert_eq!(rctls(&s)[0], rctl("zone.cpu-cap", 150));
}

#[test]
fn disk_limits_are_refused() {
    let mut s = spec();
    assert_eq!(unsupported_limits(&s), None);
    s.limits.io = Some(IoLimits::default());
    assert_eq!(unsupported_limits(&s), None);
    s.limits.io = Some(IoLimits {
        read_bps: 1 << 20,
        ..IoLimits::default()
    });
    assert!(unsupported_limits(&s).unwrap().contains("disk limits"));
}

#[test]
fn zvol_paths_in_illumos_form() {
    let d = |s: &str| illumos_device(Path::new(s));
    assert_eq!(
        d("/dev/zvol/tank/a"),
        PathBuf::from("/dev/zvol/rdsk/tank/a")
    );
    assert_eq!(
        d("/dev/zvol/rdsk/tank/a"),
        PathBuf::from("/dev/zvol/rdsk/tank/a")
    );
    assert_eq!(
        d("/dev/zvol/dsk/tank/a"),
        PathBuf::from("/dev/zvol/dsk/tank/a")
    );
    assert_eq!(d("/dev/kvm"), PathBuf::from("/dev/kvm"));
    assert_eq!(d("/dev/zvolx/a"), PathBuf::from("/dev/zvolx/a"));
    let mut s = spec();
    s.devices
        .push(PathBuf::from("/dev/zvol/rdsk/tank/vmpool/vms/x-disk0"));
    assert_eq!(
        devices(&s),
        vec![
            (PathBuf::from("/dev/kvm"), PathBuf::from("/dev/kvm")),
            (
                PathBuf::from("/dev/zvol/tank/vmpool/vms/x-disk0"),
                PathBuf::from("/dev/zvol/rdsk/tank/vmpool/vms/x-disk0")
            ),
        ]
    );
}

#[test]
fn stale_device_paths_in_qemu_args() {
    let devs = devices(&spec());
    let args = |a: &str| vec!["-m".to_string(), a.to_string()];
    let hit = stale_device_arg(
        &args("file=/dev/zvol/tank/vmpool/vms/x-disk0,format=raw,if=none"),
        &devs,
    );
    assert_eq!(
        hit.map(|h| h.2),
        Some(PathBuf::from("/dev/zvol/rdsk/tank/vmpool/vms/x-disk0"))
    );
    assert!(stale_device_arg(
        &args("file=/dev/zvol/rdsk/tank/vmpool/vms/x-disk0,format=raw"),
        &devs
    )
    .is_none());
    // A longer name that merely starts with the path is another dataset.
    assert!(stale_device_arg(&args("file=/dev/zvol/tank/vmpool/vms/x-disk01"), &devs).is_none());
}

#[test]
fn mounts_of_the_spec() {
    let m = mounts(&spec(), is_dir).unwrap();
    assert_eq!(
        m,
        vec![
            Mount {
                dir: PathBuf::from("/var/vmpool/images"),
                read_only: true
            },
            Mount {
                dir: PathBuf::from("/var/vmpool/run/x/qemu"),
                read_only: false
            },
        ]
    );
    assert_eq!(m[0].options(), ["ro", "nodevices"]);
    assert_eq!(m[1].options(), ["rw", "nodevices"]);
}

#[test]
fn mounts_refuse_files_written_and_merge_nested() {
    let mut s = spec();
    s.writable
        .push(PathBuf::from("/var/vmpool/vms/x-disk0.qcow2"));
    assert!(mounts(&s, is_dir).unwrap_err().contains("x-disk0.qcow2"));
    let mut s = spec();
    s.readable = vec![
        PathBuf::from("/var/vmpool/run/x/qemu/fw"),
        PathBuf::from("/var/vmpool/run/x/qemu"),
        PathBuf::from("/srv/a"),
        PathBuf::from("/srv/a/b"),
    ];
    let m = mounts(&s, is_dir).unwrap();
    let dirs: Vec<(&str, bool)> = m
        .iter()
        .map(|m| (m.dir.to_str().unwrap(), m.read_only))
        .collect();
    assert_eq!(
        dirs,
        vec![("/srv/a", true), ("/var/vmpool/run/x/qemu", false)]
    );
    s.readable = vec![PathBuf::from("relative")];
    assert!(mounts(&s, is_dir).is_err());
    // A file at the top would mean mounting the host's `/`.
    s.readable = vec![PathBuf::from("/firmware.fd")];
    assert!(mounts(&s, is_dir).unwrap_err().contains("zone's own path"));
    s.readable = vec![PathBuf::from("/var/vmpool/run")];
    assert!(mounts(&s, is_dir).is_err());
}

#[test]
fn startvm_execs_qemu_with_quoted_args() {
    let s = startvm_script(
        "vmpool-x",
        Path::new("/smartdc/bin/qemu-system-x86_64"),
        &["-name".into(), "it's a VM".into(), "".into()],
    );
    assert!(s.starts_with("#!/usr/bin/bash\n"));
    assert!(s.contains(
        "exec </dev/null >/tmp/vmpool.stdout 2>/tmp/vmpool.stderr\n\
         echo ready >/tmp/vmpool.ready\n"
    ));
    assert!(s.ends_with("exec '/smartdc/bin/qemu-system-x86_64' '-name' 'it'\\''s a VM' ''\n"));
    assert_eq!(shell_quote("a'b"), r"'a'\''b'");
}

#[test]
fn visibility_platform_and_mnttab() {
    assert!(visible_in_zone(Path::new("/usr/bin/qemu-system-x86_64")));
    assert!(visible_in_zone(Path::new(
        "/smartdc/bin/qemu-system-x86_64"
    )));
    assert!(!visible_in_zone(Path::new("/opt/local/bin/qemu")));
    assert!(!visible_in_zone(Path::new("/usrx/qemu")));
    assert_eq!(platform("joyent_20240301T000507Z"), Platform::SmartOs);
    assert_eq!(platform("omnios-r151050-abc"), Platform::Illumos);
    let tab = "zones/x\t/zones/x\tzfs\trw\t1\n\
               /usr\t/var/r/zone/root/usr\tlofs\tro\t2\n\
               /a\t/var/r/zone2\tlofs\tro\t3\n";
    assert_eq!(
        mounts_under(tab, Path::new("/var/r/zone")),
        vec![PathBuf::from("/var/r/zone/root/usr")]
    );
}
