//! vmpool reads qcow2 itself (no qemu-img process in the library). This test makes images
//! with every option set `qemu-img` offers and checks that vmpool's expansion to raw is byte
//! for byte what `qemu-img convert -O raw` produces. qemu-img and qemu-io are test tooling
//! here, never used by the library.

use crate::common::*;
use std::fs::File;
use std::path::Path;
use std::process::Command;

fn run(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const SIZE: u64 = 24 << 20;

/// What vmpool makes of `img`, as a sparse raw file.
fn expand(img: &Path, out: &Path) {
    let src = File::open(img).unwrap();
    let q = vmpool::image::qcow2::Image::open(&src).unwrap_or_else(|e| panic!("{e}"));
    let dst = File::create(out).unwrap();
    dst.set_len(q.header.size).unwrap();
    q.expand_to(&dst, &mut |_| Ok(())).unwrap();
}

#[test]
fn expansion_matches_qemu_img_for_every_option_set() {
    let tmp = scratch();
    let dir = tmp.path();
    // Data at unaligned places, a run of zeros written as data, and the last byte.
    let raw = make_raw(
        dir,
        "src.raw",
        SIZE,
        &[
            (0, 3000),
            (70_000, 200_000),
            (5 << 20, 1 << 20),
            (SIZE - 700, 700),
        ],
    );
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new().write(true).open(&raw).unwrap();
        f.write_all_at(&[0u8; 8192], 9 << 20).unwrap();
        // Compressible text over several clusters, so that -c really stores compressed ones.
        let text: String = (0..60_000).map(|i| format!("guest block {i}\n")).collect();
        f.write_all_at(text.as_bytes(), 12 << 20).unwrap();
    }
    let cases: &[(&str, &str, bool)] = &[
        ("cluster 512 B", "cluster_size=512", false),
        ("cluster 4 KiB", "cluster_size=4096", false),
        ("cluster 64 KiB", "cluster_size=65536", false),
        ("cluster 2 MiB", "cluster_size=2097152", false),
        ("compat 0.10", "compat=0.10", false),
        ("lazy refcounts", "lazy_refcounts=on", false),
        ("preallocation metadata", "preallocation=metadata", false),
        ("preallocation falloc", "preallocation=falloc", false),
        ("preallocation full", "preallocation=full", false),
        ("refcount bits 1", "refcount_bits=1", false),
        ("refcount bits 64", "refcount_bits=64", false),
        ("zlib", "compression_type=zlib", true),
        (
            "zlib, 4 KiB clusters",
            "compression_type=zlib,cluster_size=4096",
            true,
        ),
        ("zstd", "compression_type=zstd", true),
        (
            "zstd, 2 MiB clusters",
            "compression_type=zstd,cluster_size=2097152",
            true,
        ),
        ("extended L2", "extended_l2=on", false),
        (
            "extended L2, 16 KiB",
            "extended_l2=on,cluster_size=16384",
            false,
        ),
        (
            "extended L2, 2 MiB",
            "extended_l2=on,cluster_size=2097152",
            false,
        ),
        (
            "extended L2, zstd",
            "extended_l2=on,compression_type=zstd",
            true,
        ),
    ];
    let mut checked = 0;
    for (name, opts, compress) in cases {
        let img = dir.join("img.qcow2");
        let _ = std::fs::remove_file(&img);
        let mut args = vec!["convert", "-f", "raw", "-O", "qcow2", "-o", opts];
        if *compress {
            args.push("-c");
        }
        args.extend([raw.to_str().unwrap(), img.to_str().unwrap()]);
        run("qemu-img", &args);
        // Writes smaller than a cluster (subclusters with extended L2), zero writes and a
        // discard, as a running guest leaves them.
        run(
            "qemu-io",
            &[
                "-f",
                "qcow2",
                "-c",
                "write -P 0x5a 12288 4096",
                "-c",
                "write -z 5242880 65536",
                "-c",
                "write -P 0xa5 20971520 1536",
                "-c",
                "discard 8388608 65536",
                img.to_str().unwrap(),
            ],
        );
        if *compress {
            let map = Command::new("qemu-img")
                .args(["map", "--output=json", img.to_str().unwrap()])
                .output()
                .unwrap();
            assert!(
                String::from_utf8_lossy(&map.stdout).contains("\"compressed\": true"),
                "{name}: qemu-img stored no compressed cluster, so this case tests nothing"
            );
        }
        let want = dir.join("want.raw");
        run(
            "qemu-img",
            &[
                "convert",
                "-f",
                "qcow2",
                "-O",
                "raw",
                img.to_str().unwrap(),
                want.to_str().unwrap(),
            ],
        );
        let got = dir.join("got.raw");
        expand(&img, &got);
        assert_eq!(
            sha256_file(&got),
            sha256_file(&want),
            "{name} ({opts}): vmpool's expansion differs from qemu-img convert"
        );
        checked += 1;
    }
    eprintln!("{checked} qcow2 option sets expand exactly as qemu-img convert does");
}

#[test]
fn a_truncated_compressed_cluster_is_corruption_not_zeros() {
    let tmp = scratch();
    let dir = tmp.path();
    // Compressible data (text), so that qemu-img really stores compressed clusters.
    let raw = dir.join("src.raw");
    let text: String = (0..200_000)
        .map(|i| format!("line {i} of a compressible image\n"))
        .collect();
    std::fs::write(&raw, &text.as_bytes()[..4 << 20]).unwrap();
    for ctype in ["zlib", "zstd"] {
        let img = dir.join(format!("{ctype}.qcow2"));
        run(
            "qemu-img",
            &[
                "convert",
                "-f",
                "raw",
                "-O",
                "qcow2",
                "-c",
                "-o",
                &format!("compression_type={ctype}"),
                raw.to_str().unwrap(),
                img.to_str().unwrap(),
            ],
        );
        // Cut the file in the middle of its compressed data.
        let f = std::fs::OpenOptions::new().write(true).open(&img).unwrap();
        let len = f.metadata().unwrap().len();
        f.set_len(len - 1000).unwrap();
        let src = File::open(&img).unwrap();
        let q = vmpool::image::qcow2::Image::open(&src).unwrap();
        let dst = File::create(dir.join("out.raw")).unwrap();
        let e = q.expand_to(&dst, &mut |_| Ok(())).unwrap_err();
        assert_eq!(e.code(), Code::VMPOOL_RESULT_CORRUPT_IMAGE, "{ctype}: {e}");
    }
}
