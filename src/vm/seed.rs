//! The NoCloud seed of a VM: a small FAT volume labelled `CIDATA`, attached read-only, that
//! tells a cold-booting guest who it is. cloud-init reads `meta-data` (instance id, hostname)
//! and `user-data`; guests built from vmpool's recipes read `vmpool.json` (the same document
//! the guest program of a memory-template clone gets, see [`crate::vm::identity`]) with a
//! small boot unit instead, which costs no Python start under TCG.
//!
//! Made in memory (the `fatfs` crate formats and fills it): no `mkfs.vfat`, `genisoimage` or
//! `cloud-localds` process. The file lands in the VM's run directory (root's) and reaches QEMU
//! as a read-only descriptor ([`crate::vm::qemu::SEED_FD`]), never as a path QEMU opens.
//! Seen from the guest it is a disk whose contents only vmpool wrote: it holds nothing
//! secret from the guest itself (its own identity), and is written afresh at each start.

use crate::error::{Error, Result};
use crate::vm::identity::Identity;
use crate::vm::user::GuestUser;
use std::io::{Cursor, Write};

/// The image tag that asks for a seed: `cloud_init=nocloud` (scripts/build-image sets it).
pub const CLOUD_INIT_TAG: &str = "cloud_init";

/// The volume label NoCloud looks for (FAT labels are upper case; cloud-init accepts both).
pub const LABEL: [u8; 11] = *b"CIDATA     ";

/// The seed's size: 1 MiB, room for FAT12's smallest sensible layout and a few KiB of files.
const SIZE: usize = 1 << 20;

/// Whether the value of an image's `cloud_init` tag asks for a NoCloud seed.
pub fn wanted(tag: Option<&serde_json::Value>) -> bool {
    tag.and_then(|v| v.as_str()) == Some("nocloud")
}

/// The cloud-config of `user`, as JSON (which YAML parsers read as a flow mapping): its account
/// (instead of the image's default user), locale, keyboard and time zone.
fn cloud_config(user: Option<&GuestUser>) -> serde_json::Value {
    let Some(u) = user else {
        return serde_json::json!({});
    };
    let mut account = serde_json::json!({
        "name": u.login,
        "shell": "/bin/bash",
        "lock_passwd": u.password_hash.is_none(),
    });
    if let Some(n) = &u.full_name {
        account["gecos"] = n.as_str().into();
    }
    if let Some(h) = &u.password_hash {
        account["passwd"] = h.as_str().into();
    }
    if !u.ssh_keys.is_empty() {
        account["ssh_authorized_keys"] = u.ssh_keys.clone().into();
    }
    let mut c = serde_json::json!({ "users": [account] });
    if let Some(l) = &u.locale {
        c["locale"] = l.as_str().into();
    }
    if let Some(k) = &u.keyboard {
        let (layout, variant) = crate::vm::user::keyboard_parts(k);
        c["keyboard"] = serde_json::json!({ "layout": layout });
        if let Some(v) = variant {
            c["keyboard"]["variant"] = v.into();
        }
    }
    if let Some(t) = &u.timezone {
        c["timezone"] = t.as_str().into();
    }
    c
}

/// The seed image of a VM with identity `id`: `meta-data`, `user-data` and `vmpool.json`.
pub fn nocloud(id: &Identity) -> Result<Vec<u8>> {
    let fail = |what: &str, e: std::io::Error| Error::Io {
        context: format!("making the NoCloud seed ({what})"),
        source: e,
    };
    // instance-id is a UUID and the hostname is RFC 1123 (hostname_from): both are plain
    // YAML scalars, nothing to quote.
    let meta = format!(
        "instance-id: {}\nlocal-hostname: {}\n",
        id.instance_id, id.hostname
    );
    let user = format!(
        "#cloud-config\n{}\n",
        serde_json::to_string_pretty(&cloud_config(id.user.as_ref()))
            .map_err(|e| Error::json("the cloud-config", e))?
    );
    let doc = serde_json::to_vec(id).map_err(|e| Error::json("an identity", e))?;
    let mut img = Cursor::new(vec![0u8; SIZE]);
    fatfs::format_volume(
        &mut img,
        fatfs::FormatVolumeOptions::new().volume_label(LABEL),
    )
    .map_err(|e| fail("format", e))?;
    {
        let fs = fatfs::FileSystem::new(&mut img, fatfs::FsOptions::new())
            .map_err(|e| fail("open", e))?;
        for (name, bytes) in [
            ("meta-data", meta.as_bytes()),
            ("user-data", user.as_bytes()),
            ("vmpool.json", &doc[..]),
        ] {
            let mut f = fs.root_dir().create_file(name).map_err(|e| fail(name, e))?;
            f.truncate().map_err(|e| fail(name, e))?;
            f.write_all(bytes).map_err(|e| fail(name, e))?;
            f.flush().map_err(|e| fail(name, e))?;
        }
        fs.unmount().map_err(|e| fail("unmount", e))?;
    }
    Ok(img.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use uuid::Uuid;

    fn read(img: &[u8], name: &str) -> String {
        let fs =
            fatfs::FileSystem::new(Cursor::new(img.to_vec()), fatfs::FsOptions::new()).unwrap();
        let mut s = String::new();
        fs.root_dir()
            .open_file(name)
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        s
    }

    #[test]
    fn the_seed_is_a_cidata_volume_with_the_identity() {
        let u = Uuid::new_v4();
        let id = Identity::at_boot(u, "Desk 7");
        let img = nocloud(&id).unwrap();
        assert_eq!(img.len(), SIZE);
        let fs = fatfs::FileSystem::new(Cursor::new(img.clone()), fatfs::FsOptions::new()).unwrap();
        assert_eq!(fs.volume_label(), "CIDATA");
        assert_eq!(
            read(&img, "meta-data"),
            format!("instance-id: {u}\nlocal-hostname: desk-7\n")
        );
        assert!(read(&img, "user-data").starts_with("#cloud-config\n"));
        let doc: serde_json::Value = serde_json::from_str(&read(&img, "vmpool.json")).unwrap();
        assert_eq!(doc["instance_id"], u.to_string());
        assert_eq!(doc["hostname"], "desk-7");
        // A cold boot keeps the machine id its first boot made.
        assert!(doc.get("machine_id").is_none(), "{doc}");
        assert_eq!(doc["seed"].as_str().unwrap().len(), 64);
    }

    #[test]
    fn the_user_becomes_cloud_config() {
        let u = GuestUser {
            login: "alice".into(),
            full_name: Some("Alice \"A\" Liddell".into()),
            keyboard: Some("de(nodeadkeys)".into()),
            timezone: Some("Europe/Berlin".into()),
            ..Default::default()
        };
        let id = Identity {
            user: Some(u),
            ..Identity::at_boot(Uuid::new_v4(), "d")
        };
        let img = nocloud(&id).unwrap();
        let text = read(&img, "user-data");
        let c: serde_json::Value =
            serde_json::from_str(text.strip_prefix("#cloud-config\n").unwrap()).unwrap();
        assert_eq!(c["users"][0]["name"], "alice");
        assert_eq!(c["users"][0]["gecos"], "Alice \"A\" Liddell");
        assert_eq!(c["users"][0]["lock_passwd"], true);
        assert_eq!(c["keyboard"]["layout"], "de");
        assert_eq!(c["keyboard"]["variant"], "nodeadkeys");
        assert_eq!(c["timezone"], "Europe/Berlin");
        let doc: serde_json::Value = serde_json::from_str(&read(&img, "vmpool.json")).unwrap();
        assert_eq!(doc["user"]["login"], "alice");
        // Without a user, cloud-init keeps the image's defaults.
        let img = nocloud(&Identity::at_boot(Uuid::new_v4(), "d")).unwrap();
        assert_eq!(read(&img, "user-data"), "#cloud-config\n{}\n");
    }

    #[test]
    fn only_nocloud_asks_for_a_seed() {
        assert!(wanted(Some(&"nocloud".into())));
        assert!(!wanted(Some(&"configdrive".into())));
        assert!(!wanted(Some(&serde_json::json!(true))));
        assert!(!wanted(None));
    }
}
