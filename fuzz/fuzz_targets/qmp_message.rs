//! One line from QEMU's monitor: whatever a QEMU (or something pretending to be one on the
//! socket) sends, parsing it never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|line: &[u8]| {
    let _ = vmpool::vm::qmp::parse_message(line);
});
