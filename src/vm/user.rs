//! The person a VM is for: login name, full name, password hash or SSH keys, locale, keyboard
//! layout and time zone. The caller (the portal, from the account and the browser) passes it
//! with a VM or an acquire; the guest applies it through the same identity document as its
//! hostname (`crate::vm::identity`): cloud-init reads it from the seed's `user-data`, the
//! recipes' `on-clone` from `vmpool.json`.
//!
//! Every value ends up in a guest's `/etc/passwd`, a shell script's variables or YAML, so
//! each is checked against a narrow rule here, before anything is made, and refused by name.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// Most SSH public keys accepted.
pub const SSH_KEYS_MAX: usize = 32;
/// Longest SSH public key line accepted (an RSA 16384-bit key is about 2.8 KB).
pub const SSH_KEY_MAX: usize = 8192;

/// Names a guest's base system owns (users and groups of Debian's base and desktop packages):
/// a caller may not take them over.
const RESERVED: &[&str] = &[
    "root",
    "daemon",
    "bin",
    "sys",
    "sync",
    "games",
    "man",
    "lp",
    "mail",
    "news",
    "uucp",
    "proxy",
    "www-data",
    "backup",
    "list",
    "irc",
    "gnats",
    "nobody",
    "systemd-network",
    "systemd-resolve",
    "systemd-timesync",
    "messagebus",
    "sshd",
    "lightdm",
    "polkitd",
    "avahi",
    "pulse",
    "rtkit",
    "colord",
    "_apt",
    "usbmux",
    "dnsmasq",
    "saned",
    "geoclue",
    "uuidd",
    "tss",
    "systemd-coredump",
    "systemd-journal",
    "_rpc",
    "statd",
    "tcpdump",
    "avahi-autoipd",
    "speech-dispatcher",
    "hplip",
    "kernoops",
    "cups-pk-helper",
    "nm-openvpn",
    "sddm",
    "gdm",
    "_chrony",
    "ntp",
    "postfix",
    "_ssh",
    "adm",
    "tty",
    "disk",
    "kmem",
    "dialout",
    "fax",
    "voice",
    "cdrom",
    "floppy",
    "tape",
    "sudo",
    "audio",
    "dip",
    "operator",
    "src",
    "shadow",
    "utmp",
    "video",
    "sasl",
    "plugdev",
    "staff",
    "users",
    "nogroup",
    "input",
    "sgx",
    "kvm",
    "render",
    "pulse-access",
    "autologin",
];

/// The person a VM is for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct GuestUser {
    /// Login name: a lowercase letter or `_`, then up to 31 lowercase letters, digits, `_` or
    /// `-`; not a system account's name.
    pub login: String,
    /// Full name (GECOS): up to 128 characters, no control characters, `:` or `,`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_name: Option<String>,
    /// A crypt(3) hash (`$y$` yescrypt, `$6$` SHA-512, `$5$` SHA-256, `$2b$` bcrypt), never a
    /// password; without it (and without keys) the account has no password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_hash: Option<String>,
    /// OpenSSH public keys, one per entry (`ssh-ed25519 AAAA... comment`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ssh_keys: Vec<String>,
    /// Locale, e.g. `de_DE.UTF-8`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
    /// X keyboard layout, e.g. `de`; optionally with a variant: `de(nodeadkeys)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyboard: Option<String>,
    /// IANA time zone, e.g. `Europe/Berlin`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
}

fn bad(field: &str, why: impl std::fmt::Display) -> Error {
    Error::invalid(format!("user.{field}: {why}"))
}

fn only(field: &str, v: &str, max: usize, ok: impl Fn(char) -> bool) -> Result<()> {
    if v.is_empty() {
        return Err(bad(field, "is empty"));
    }
    if v.chars().count() > max {
        return Err(bad(
            field,
            format!("is {} characters long; at most {max}", v.chars().count()),
        ));
    }
    match v.chars().find(|c| !ok(*c)) {
        Some(c) => Err(bad(field, format!("has the character {c:?}"))),
        None => Ok(()),
    }
}

impl GuestUser {
    /// Check every field; the first bad one is named in the error.
    pub fn validate(&self) -> Result<()> {
        only("login", &self.login, 32, |c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-'
        })?;
        if !self
            .login
            .starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        {
            return Err(bad("login", "must start with a lowercase letter or '_'"));
        }
        if RESERVED.contains(&self.login.as_str()) {
            return Err(bad(
                "login",
                format!("{:?} is a system account", self.login),
            ));
        }
        if let Some(n) = &self.full_name {
            only("full_name", n, 128, |c| {
                !c.is_control() && c != ':' && c != ','
            })?;
        }
        if let Some(h) = &self.password_hash {
            check_hash(h)?;
        }
        if self.ssh_keys.len() > SSH_KEYS_MAX {
            return Err(bad(
                "ssh_keys",
                format!("{} keys; at most {SSH_KEYS_MAX}", self.ssh_keys.len()),
            ));
        }
        for k in &self.ssh_keys {
            check_ssh_key(k)?;
        }
        if let Some(l) = &self.locale {
            only("locale", l, 32, |c| {
                c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '@')
            })?;
            if !l.starts_with(|c: char| c.is_ascii_lowercase()) {
                return Err(bad("locale", "must look like de_DE.UTF-8"));
            }
        }
        if let Some(k) = &self.keyboard {
            check_keyboard(k)?;
        }
        if let Some(t) = &self.timezone {
            only("timezone", t, 64, |c| {
                c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '-' | '+')
            })?;
            if t.starts_with('/') || t.ends_with('/') || t.contains("//") {
                return Err(bad("timezone", "must look like Europe/Berlin"));
            }
        }
        Ok(())
    }
}

fn check_hash(h: &str) -> Result<()> {
    only("password_hash", h, 256, |c| {
        c.is_ascii_alphanumeric() || matches!(c, '$' | '.' | '/' | '=' | ',')
    })?;
    let known = ["$y$", "$gy$", "$6$", "$5$", "$2b$", "$2y$"];
    if !known.iter().any(|p| h.starts_with(p)) {
        return Err(bad(
            "password_hash",
            "is not a crypt(3) hash of a kind the guests accept ($y$, $6$, $5$, $2b$); \
             a password itself is never accepted",
        ));
    }
    // Salt and hash after the scheme (and its parameters): at least two non-empty fields.
    let fields: Vec<&str> = h.split('$').skip(2).collect();
    if fields.len() < 2 || fields.iter().any(|f| f.is_empty()) || h.len() < 20 {
        return Err(bad("password_hash", "is not a complete crypt(3) hash"));
    }
    Ok(())
}

fn check_ssh_key(k: &str) -> Result<()> {
    if k.len() > SSH_KEY_MAX {
        return Err(bad(
            "ssh_keys",
            format!("a key of {} bytes; at most {SSH_KEY_MAX}", k.len()),
        ));
    }
    if k.chars().any(|c| c.is_control()) {
        return Err(bad(
            "ssh_keys",
            "a key has a control character (one line each)",
        ));
    }
    let mut parts = k.split(' ');
    let kind = parts.next().unwrap_or("");
    let kinds = [
        "ssh-ed25519",
        "ssh-rsa",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "sk-ssh-ed25519@openssh.com",
        "sk-ecdsa-sha2-nistp256@openssh.com",
    ];
    if !kinds.contains(&kind) {
        return Err(bad(
            "ssh_keys",
            format!("a key of kind {:?}; known: {}", kind, kinds.join(", ")),
        ));
    }
    let body = parts.next().unwrap_or("");
    use base64::Engine;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(body)
        .map_err(|_| bad("ssh_keys", "a key's second field is not base64"))?;
    // The blob starts with its own kind, length-prefixed: a key of one kind labelled another
    // is refused.
    let inner = decoded
        .get(4..)
        .and_then(|rest| rest.get(..u32::from_be_bytes(decoded[..4].try_into().ok()?) as usize));
    if inner != Some(kind.as_bytes()) {
        return Err(bad("ssh_keys", format!("a key's data is not a {kind} key")));
    }
    Ok(())
}

fn check_keyboard(k: &str) -> Result<()> {
    let (layout, variant) = match k.split_once('(') {
        Some((l, rest)) => match rest.strip_suffix(')') {
            Some(v) => (l, Some(v)),
            None => return Err(bad("keyboard", "must look like de or de(nodeadkeys)")),
        },
        None => (k, None),
    };
    only("keyboard", layout, 16, |c| c.is_ascii_lowercase())?;
    if let Some(v) = variant {
        only("keyboard", v, 32, |c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-'
        })?;
    }
    Ok(())
}

/// The `(layout, variant)` of a checked keyboard value.
pub fn keyboard_parts(k: &str) -> (&str, Option<&str>) {
    match k.split_once('(') {
        Some((l, v)) => (l, v.strip_suffix(')')),
        None => (k, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED25519: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFf1Nk9vSpLxvS0Gr3KZp8MGW9qbX4Ep4BX9Y8bGqfpA alice@x";
    const YESCRYPT: &str =
        "$y$j9T$F5Jx5fExrKuPp53xLKQ..1$X3DX6M94c7o.9agCG9G317fhZg9SqC.5i5rd.RhAtQ7";

    fn alice() -> GuestUser {
        GuestUser {
            login: "alice".into(),
            full_name: Some("Alice Liddell".into()),
            password_hash: Some(YESCRYPT.into()),
            ssh_keys: vec![ED25519.into()],
            locale: Some("de_DE.UTF-8".into()),
            keyboard: Some("de(nodeadkeys)".into()),
            timezone: Some("Europe/Berlin".into()),
        }
    }

    fn refused(u: GuestUser, field: &str) {
        let e = u.validate().unwrap_err();
        assert_eq!(e.code(), crate::ResultCode::VMPOOL_RESULT_INVALID_ARGUMENT);
        assert!(e.to_string().contains(&format!("user.{field}")), "{e}");
    }

    #[test]
    fn a_whole_user_is_accepted() {
        alice().validate().unwrap();
        GuestUser {
            login: "_x-1".into(),
            ..Default::default()
        }
        .validate()
        .unwrap();
        assert_eq!(keyboard_parts("de(nodeadkeys)"), ("de", Some("nodeadkeys")));
        assert_eq!(keyboard_parts("us"), ("us", None));
    }

    #[test]
    fn each_bad_field_is_named() {
        for login in [
            "",
            "Alice",
            "1x",
            "root",
            "a b",
            "a:b",
            &"x".repeat(33),
            "ä",
        ] {
            refused(
                GuestUser {
                    login: login.into(),
                    ..alice()
                },
                "login",
            );
        }
        for name in ["a\nb", "a:b", "a,b", &"n".repeat(10 * 1024), "\u{7}"] {
            refused(
                GuestUser {
                    full_name: Some(name.into()),
                    ..alice()
                },
                "full_name",
            );
        }
        for h in [
            "secret",
            "$1$abc$def",
            "$6$",
            "$6$salt$",
            "$6$sa lt$x",
            "$y$j9T$a$b\n",
        ] {
            refused(
                GuestUser {
                    password_hash: Some(h.into()),
                    ..alice()
                },
                "password_hash",
            );
        }
        let mislabelled = ED25519.replacen("ssh-ed25519", "ssh-rsa", 1);
        for k in [
            "ssh-dss AAAA",
            "ssh-ed25519 !!!",
            mislabelled.as_str(),
            "ssh-ed25519 AAAA\nssh-ed25519 AAAA",
        ] {
            refused(
                GuestUser {
                    ssh_keys: vec![k.into()],
                    ..alice()
                },
                "ssh_keys",
            );
        }
        refused(
            GuestUser {
                ssh_keys: vec![ED25519.into(); SSH_KEYS_MAX + 1],
                ..alice()
            },
            "ssh_keys",
        );
        for l in ["DE", "de_DE;rm", "x".repeat(40).as_str()] {
            refused(
                GuestUser {
                    locale: Some(l.into()),
                    ..alice()
                },
                "locale",
            );
        }
        for k in ["DE", "de(", "de(no dead)", "de;x"] {
            refused(
                GuestUser {
                    keyboard: Some(k.into()),
                    ..alice()
                },
                "keyboard",
            );
        }
        for t in ["/etc/passwd", "Europe//Berlin", "Europe/Berlin\n", "a b"] {
            refused(
                GuestUser {
                    timezone: Some(t.into()),
                    ..alice()
                },
                "timezone",
            );
        }
    }
}
