//! Journal entries as recovery reads them after a crash: an operation body or, for deletes,
//! a catalog record. The first byte picks the key the entry is read under.
#![no_main]

use libfuzzer_sys::fuzz_target;

/// The UUID the seed corpus uses, so that the fuzzer can reach the "key matches" paths.
const UUID: &str = "11111111-1111-4111-8111-111111111111";

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let (key, bytes) = match pick % 4 {
        0 => (format!("vm-{UUID}"), rest),
        1 => (format!("image-{UUID}"), rest),
        // A key made of the bytes up to the first newline (any text, or none).
        2 => {
            let cut = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
            let key = String::from_utf8_lossy(&rest[..cut]).into_owned();
            (key, rest.get(cut + 1..).unwrap_or_default())
        }
        // A key for a UUID made of the next 16 bytes.
        _ => {
            if rest.len() < 16 {
                return;
            }
            let (u, rest) = rest.split_at(16);
            let u = uuid_from(u);
            let kind = if pick & 4 == 0 { "vm" } else { "image" };
            (format!("{kind}-{u}"), rest)
        }
    };
    if let Ok((op, _pid)) = vmpool::store::journal::parse_entry(&key, bytes) {
        // What parses is for the key it was read under.
        assert_eq!(op.key(), key);
    }
});

fn uuid_from(b: &[u8]) -> String {
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}
