//! `src/ffi/result.rs` is the one list of result codes. The Ruby and Python bindings and the README
//! each carry a table of them (for exception classes and for people); this test fails when
//! any of them differs from the library's list: a code missing, extra, renumbered or renamed.

use std::collections::BTreeMap;
use vmpool::ResultCode;

fn read(rel: &str) -> String {
    std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)).unwrap()
}

/// `NULL_POINTER` -> `NullPointer`.
fn camel(name: &str) -> String {
    name.split('_')
        .map(|w| {
            let mut c = w.chars();
            match c.next() {
                Some(f) => f.to_string() + &c.as_str().to_lowercase(),
                None => String::new(),
            }
        })
        .collect()
}

/// The library's codes, except OK (bindings raise nothing for it).
fn library(with_ok: bool) -> BTreeMap<u32, String> {
    ResultCode::all()
        .filter(|c| with_ok || *c != ResultCode::VMPOOL_RESULT_OK)
        .map(|c| (c as u32, c.name().to_owned()))
        .collect()
}

/// Pairs `(number, name)` found by a pattern with two groups, in either order.
fn scan(text: &str, re: &str, num_first: bool) -> BTreeMap<u32, String> {
    let re = regex_lite::Regex::new(re).unwrap();
    re.captures_iter(text)
        .map(|c| {
            let (n, s) = if num_first { (1, 2) } else { (2, 1) };
            (c[n].parse().unwrap(), c[s].to_owned())
        })
        .collect()
}

#[test]
fn ruby_table_matches() {
    let got = scan(
        &read("bindings/ruby/lib/vmpool.rb"),
        r"(\d+) => %i\[(\w+) \w+\]",
        true,
    );
    let want: BTreeMap<u32, String> = library(false)
        .into_iter()
        // Ruby's own IOError is a built-in class name; ours is Vmpool::IOError.
        .map(|(n, s)| {
            (
                n,
                if s == "IO" {
                    "IOError".into()
                } else {
                    camel(&s)
                },
            )
        })
        .collect();
    assert_eq!(
        got, want,
        "bindings/ruby/lib/vmpool.rb CODES differs from src/ffi/result.rs"
    );
}

#[test]
fn python_table_matches() {
    let got = scan(
        &read("bindings/python/vmpool/__init__.py"),
        r#"_cls\("(\w+)", (\d+)"#,
        false,
    );
    let want: BTreeMap<u32, String> = library(false)
        .into_iter()
        .map(|(n, s)| {
            (
                n,
                if s == "IO" {
                    "IoError".into()
                } else {
                    camel(&s)
                },
            )
        })
        .collect();
    assert_eq!(
        got, want,
        "bindings/python/vmpool/__init__.py differs from src/ffi/result.rs"
    );
}

#[test]
fn readme_table_matches() {
    let readme = read("README.md");
    let table = readme
        .split("<!-- codes:begin -->")
        .nth(1)
        .and_then(|r| r.split("<!-- codes:end -->").next())
        .expect("README.md has a <!-- codes:begin --> ... <!-- codes:end --> table");
    let got = scan(table, r"\| (\d+) \| `?([A-Z0-9_]+)`? \|", true);
    assert_eq!(
        got,
        library(true),
        "README.md's result-code table differs from src/ffi/result.rs"
    );
}

#[test]
fn codes_fit_an_exit_status_and_names_are_unique() {
    let all = library(true);
    assert!(all.keys().all(|&n| n < 64));
    let names: std::collections::BTreeSet<_> = all.values().collect();
    assert_eq!(names.len(), all.len());
}
