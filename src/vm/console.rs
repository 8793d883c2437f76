//! SPICE consoles: a fresh ticket per request, set with QMP `set_password` and made to expire
//! with `expire_password`, and how to connect (a `spice+unix://` or `spice://` URI and the
//! text of a remote-viewer connection file, as Proxmox hands them out).

use crate::vm::config::SpiceAddr;
use std::fmt::Write;
use std::time::Duration;

/// Shortest and longest ticket life.
pub const TTL_MIN: Duration = Duration::from_secs(1);
/// One day: a console link is for a session, not for keeps.
pub const TTL_MAX: Duration = Duration::from_secs(86_400);

/// A console ticket and how to use it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Console {
    /// Where SPICE listens.
    pub addr: SpiceAddr,
    /// `spice+unix:///path` or `spice://host:port`.
    pub uri: String,
    /// The ticket (password).
    pub password: String,
    /// When QEMU stops accepting it, RFC 3339 UTC.
    pub expires_at: String,
    /// The same as seconds since the Unix epoch.
    pub expires_at_unix: u64,
    /// A remote-viewer connection file (`remote-viewer FILE`, or `remote-viewer -` reading
    /// it from standard input so the password never touches a disk).
    pub vv: String,
}

/// A random ticket: 128 bits, in 32 hex digits (SPICE takes at most 60 bytes).
pub fn new_password() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// The URI of a SPICE address.
pub fn uri(addr: &SpiceAddr) -> String {
    match addr {
        SpiceAddr::Unix { path } => format!("spice+unix://{}", path.display()),
        SpiceAddr::Tcp { host, port } if host.is_ipv6() => format!("spice://[{host}]:{port}"),
        SpiceAddr::Tcp { host, port } => format!("spice://{host}:{port}"),
    }
}

/// The text of a remote-viewer connection file (remote-viewer(1), "CONNECTION FILE";
/// `unix-path` since virt-viewer 8): deleted by remote-viewer once read, with the key
/// combinations Proxmox uses.
pub fn vv_file(addr: &SpiceAddr, password: &str, title: &str) -> String {
    let mut s = String::from("[virt-viewer]\ntype=spice\n");
    match addr {
        SpiceAddr::Unix { path } => {
            let _ = writeln!(s, "unix-path={}", path.display());
        }
        SpiceAddr::Tcp { host, port } => {
            let _ = writeln!(s, "host={host}\nport={port}");
        }
    }
    let _ = write!(
        s,
        "password={password}\ntitle={title}\ndelete-this-file=1\ntoggle-fullscreen=shift+f11\nrelease-cursor=shift+f12\nsecure-attention=ctrl+alt+end\n"
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vv_files() {
        let unix = SpiceAddr::Unix {
            path: "/s/run/x/spice.sock".into(),
        };
        let v = vv_file(&unix, "pw", "desk-1");
        assert!(v.starts_with(
            "[virt-viewer]\ntype=spice\nunix-path=/s/run/x/spice.sock\npassword=pw\n"
        ));
        assert!(v.contains("delete-this-file=1\n") && v.contains("secure-attention="));
        let tcp = SpiceAddr::Tcp {
            host: std::net::IpAddr::from([127, 0, 0, 1]),
            port: 5930,
        };
        assert!(vv_file(&tcp, "pw", "t").contains("host=127.0.0.1\nport=5930\n"));
        assert_eq!(uri(&tcp), "spice://127.0.0.1:5930");
        assert_eq!(uri(&unix), "spice+unix:///s/run/x/spice.sock");
        let p = new_password();
        assert_eq!(p.len(), 32);
        assert_ne!(p, new_password());
    }
}
