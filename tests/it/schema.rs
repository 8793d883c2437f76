//! The JSON Schema of the C ABI (`docs/vmpool.schema.json`) is what the wire types generate,
//! and the header documents exactly the keys it holds. (The bindings are checked against the
//! same file by their own suites: `bindings/python/tests/test_schema.py` and
//! `bindings/ruby/test/schema_test.rb`.)
//!
//! After a change of the wire types: `make schema` writes the file anew.

use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn committed() -> Value {
    let text = std::fs::read_to_string(root().join("docs/vmpool.schema.json"))
        .expect("docs/vmpool.schema.json (make schema writes it)");
    serde_json::from_str(&text).unwrap()
}

#[test]
fn the_schema_file_is_what_the_wire_types_generate() {
    let fresh = vmpool::ffi::wire::schema();
    if std::env::var_os("VMPOOL_WRITE_SCHEMA").is_some() {
        let mut text = serde_json::to_string_pretty(&fresh).unwrap();
        text.push('\n');
        std::fs::write(root().join("docs/vmpool.schema.json"), text).unwrap();
    }
    assert!(
        committed() == fresh,
        "docs/vmpool.schema.json is stale: run make schema"
    );
}

/// The properties of `s` (following a `$ref` into `$defs`, and an array's items).
fn keys(doc: &Value, s: &Value) -> BTreeSet<String> {
    let s = if s["type"] == "array" { &s["items"] } else { s };
    let s = match s["$ref"].as_str() {
        Some(r) => {
            let name = r.strip_prefix("#/$defs/").expect("a local $ref");
            &doc["$defs"][name]
        }
        None => s,
    };
    s["properties"]
        .as_object()
        .unwrap_or_else(|| panic!("no properties in {s}"))
        .keys()
        .cloned()
        .collect()
}

/// The comment block the header has right above `vmpool_result NAME(`, as one line.
fn header_doc(header: &str, name: &str) -> String {
    let lines: Vec<&str> = header.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.contains(&format!(" {name}(")))
        .unwrap_or_else(|| panic!("{name} is not in include/vmpool.h"));
    let mut doc = Vec::new();
    for l in lines[..at].iter().rev() {
        match l.trim_start().strip_prefix("//") {
            Some(text) => doc.push(text.trim()),
            None => break,
        }
    }
    doc.reverse();
    doc.join(" ")
}

/// The backticked names after `label` up to the end of that sentence (a `.` outside
/// backticks and parentheses).
fn listed(doc: &str, label: &str, name: &str) -> BTreeSet<String> {
    let start = doc
        .find(label)
        .unwrap_or_else(|| panic!("the header's {name} says no \"{label}\": {doc}"));
    let rest = &doc[start + label.len()..];
    let rest = &rest[rest.find(':').expect("a colon after the label") + 1..];
    // Names in parentheses describe a value (`"bios"`, the keys of a nested object): skipped.
    let (mut out, mut inside, mut depth, mut cur) = (BTreeSet::new(), false, 0, String::new());
    for c in rest.chars() {
        match (c, inside) {
            ('`', false) => inside = true,
            ('`', true) => {
                let name = std::mem::take(&mut cur);
                if depth == 0 {
                    out.insert(name);
                }
                inside = false;
            }
            (c, true) => cur.push(c),
            ('(', false) => depth += 1,
            (')', false) => depth -= 1,
            ('.', false) if depth == 0 => break,
            _ => {}
        }
    }
    out
}

#[test]
fn the_header_lists_every_key_each_entry_point_accepts_and_writes() {
    let doc = committed();
    let header = std::fs::read_to_string(root().join("include/vmpool.h")).unwrap();
    let points = doc["entry_points"].as_object().unwrap();
    assert!(points.len() >= 18, "{}", points.len());
    for (name, p) in points {
        let text = header_doc(&header, name);
        if let Some(input) = p.get("input") {
            let arg = p["argument"].as_str().unwrap();
            assert_eq!(
                listed(&text, &format!("Keys of `{arg}`"), name),
                keys(&doc, input),
                "{name}: the header's keys of {arg} differ from the schema's"
            );
        }
        if let Some(output) = p.get("output") {
            assert_eq!(
                listed(&text, "Keys written", name),
                keys(&doc, output),
                "{name}: the header's written keys differ from the schema's"
            );
        }
    }
}

/// Inputs refuse unknown keys, so the schema says so too (a binding validated against it
/// finds a misspelt key before the library does).
#[test]
fn every_input_refuses_unknown_keys() {
    let doc = committed();
    for (name, p) in doc["entry_points"].as_object().unwrap() {
        if let Some(input) = p.get("input") {
            let r = input["$ref"]
                .as_str()
                .unwrap()
                .trim_start_matches("#/$defs/");
            assert_eq!(
                doc["$defs"][r]["additionalProperties"],
                Value::Bool(false),
                "{name}: {r} does not refuse unknown keys"
            );
        }
    }
}
