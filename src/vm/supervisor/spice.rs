//! SPICE on a unix socket without QEMU touching a path: the supervisor listens on
//! `spice.sock` in the VM's sockets directory (root's) and hands every accepted connection
//! to QEMU's SPICE server over its command monitor (`getfd`, then `add_client` with
//! `skipauth=false`, so each client still needs the ticket). A SPICE session opens one
//! connection per channel (main, display, inputs, cursor, playback, ...): each is handed
//! over the same way, in the order they arrive.

use crate::vm::qmp::Qmp;
use std::os::fd::AsFd;
use std::os::unix::net::UnixListener;

/// The name a client's descriptor has in QEMU between `getfd` and `add_client`.
const FDNAME: &str = "vmpool-spice-client";

/// Accept on `listener` and hand each client to QEMU through `control`, until QEMU stops
/// answering (it ended) or the listener fails.
pub fn serve(listener: UnixListener, mut control: Qmp) {
    for conn in listener.incoming() {
        let Ok(conn) = conn else {
            continue;
        };
        let handed = control
            .getfd(FDNAME, conn.as_fd())
            .and_then(|_| control.add_spice_client(FDNAME));
        // QEMU holds its own duplicate now; ours closes at the end of this iteration.
        if let Err(e) = handed {
            if e.is_closed() {
                return;
            }
            eprintln!("vmpool-supervisor: a SPICE client could not be handed to QEMU: {e}");
        }
    }
}
