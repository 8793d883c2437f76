//! Checks the hand-written ZFS `sys` layer against the installed C headers: every
//! `pub fn` in src/driver/zfs/sys.rs becomes a C function-pointer assignment, every
//! `pub type X = Y;` a size check, and the result is compiled with `-Werror` against
//! `<libzfs.h>`, `<libzfs_core.h>` and `<libnvpair.h>`. A signature that drifts from the
//! headers (an argument added, a pointer const-qualified, an enum widened) fails here.

use std::process::Command;

fn c_type(rust: &str) -> String {
    let t = rust.trim();
    if let Some(inner) = t.strip_prefix("*const ") {
        let inner = c_type(inner);
        return if inner.ends_with('*') {
            format!("{inner} const *")
        } else {
            format!("const {inner} *")
        };
    }
    if let Some(inner) = t.strip_prefix("*mut ") {
        return format!("{} *", c_type(inner));
    }
    match t {
        "c_int" => "int".into(),
        "c_uint" => "unsigned int".into(),
        "c_char" => "char".into(),
        "c_void" => "void".into(),
        "u8" => "uint8_t".into(),
        "u64" => "uint64_t".into(),
        "i64" => "int64_t".into(),
        "i32" => "int32_t".into(),
        "usize" => "size_t".into(),
        // `enum_foo` in sys.rs stands for the C type `enum foo`.
        other => match other.strip_prefix("enum_") {
            Some(tag) => format!("enum {tag}"),
            None => other.into(),
        },
    }
}

/// `(name, return type, argument types)` of each declaration in the extern blocks.
fn declarations(src: &str) -> Vec<(String, String, Vec<String>)> {
    let mut out = Vec::new();
    let mut in_extern = false;
    let mut item = String::new();
    for line in src.lines() {
        let l = line.trim();
        if l.starts_with("extern \"C\"") {
            in_extern = true;
            continue;
        }
        if !in_extern || l.starts_with("//") || l.is_empty() {
            continue;
        }
        if l == "}" {
            in_extern = false;
            continue;
        }
        item.push_str(l);
        item.push(' ');
        if !l.ends_with(';') {
            continue;
        }
        let decl = std::mem::take(&mut item);
        let decl = decl
            .trim()
            .trim_end_matches(';')
            .strip_prefix("pub fn ")
            .expect("declarations are `pub fn ...;`");
        let (name, rest) = decl.split_once('(').unwrap();
        let (args, ret) = rest.rsplit_once(')').unwrap();
        let ret = ret
            .trim()
            .strip_prefix("->")
            .map(str::trim)
            .unwrap_or("c_void");
        let args: Vec<String> = args
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(|a| c_type(a.split_once(':').expect("named arguments").1))
            .collect();
        out.push((name.trim().to_owned(), c_type(ret), args));
    }
    out
}

#[test]
fn sys_declarations_match_installed_headers() {
    if !vmpool::driver::zfs::BUILT_WITH_ZFS {
        eprintln!(
            "skipped: this build has no ZFS driver (CI builds with VMPOOL_ZFS=1, so there it runs)"
        );
        return;
    }
    let src = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src/driver/zfs/sys.rs"
    ))
    .unwrap();
    let decls = declarations(&src);
    assert!(
        decls.len() >= 20,
        "parsed only {} declarations",
        decls.len()
    );
    let mut c = String::from("#define _LARGEFILE64_SOURCE\n#include <stdint.h>\n#include <stddef.h>\n#include <libzfs.h>\n#include <libzfs_core.h>\n#include <libnvpair.h>\n\n");
    for l in src.lines() {
        if let Some(rest) = l.trim().strip_prefix("pub type ") {
            let (name, ty) = rest.trim_end_matches(';').split_once('=').unwrap();
            let (name, ty) = (c_type(name), c_type(ty));
            c.push_str(&format!(
                "_Static_assert(sizeof({name}) == sizeof({ty}), \"{name} is not {ty}-sized\");\n"
            ));
        }
    }
    for (name, ret, args) in &decls {
        let args = if args.is_empty() {
            "void".to_string()
        } else {
            args.join(", ")
        };
        c.push_str(&format!("{ret} (*check_{name})({args}) = {name};\n"));
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sys_check.c");
    std::fs::write(&file, &c).unwrap();
    let flags = Command::new("pkg-config")
        .args(["--cflags", "libzfs", "libzfs_core"])
        .output()
        .expect("pkg-config");
    assert!(
        flags.status.success(),
        "pkg-config does not know libzfs: install libzfslinux-dev"
    );
    let flags = String::from_utf8(flags.stdout).unwrap();
    let out = Command::new("cc")
        .args([
            "-c",
            "-std=gnu11",
            "-Wall",
            "-Werror",
            "-Wno-unused-variable",
        ])
        .args(flags.split_whitespace())
        .arg(&file)
        .arg("-o")
        .arg(dir.path().join("sys_check.o"))
        .output()
        .expect("cc");
    assert!(
        out.status.success(),
        "src/driver/zfs/sys.rs does not match the installed headers:\n{}\n--- generated C ---\n{c}",
        String::from_utf8_lossy(&out.stderr)
    );
}
