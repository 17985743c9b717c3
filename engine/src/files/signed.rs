//! Signed, expiring file links (`/files/<id>/file-preview?timestamp&nonce&sign`),
//! the `source_url` of an upload and the `url` of a file value.
//!
//! A link is good for anyone who holds it, without an API key, until it is
//! older than the access timeout. The signature is Dify's: HMAC-SHA256 over
//! `file-preview|<file id>|<timestamp>|<nonce>` with the server's secret key,
//! URL-safe base64 with padding, so a link signed by either verifies on both
//! when they share a key.
//!
//! The key comes from `[files] secret_key` (or `FERRIFY_SECRET_KEY`); without
//! one the server makes a random key on its first start and keeps it in the
//! data directory (file `secret_key`), so links outlive restarts.

use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use uuid::Uuid;

/// Name of the key file in the data directory.
pub const KEY_FILE: &str = "secret_key";

/// Signs and checks file links.
#[derive(Clone)]
pub struct UrlSigner {
    /// The MAC keyed once; each signature works on a clone.
    mac: Hmac<Sha256>,
    timeout: Duration,
}

impl std::fmt::Debug for UrlSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UrlSigner").field("timeout", &self.timeout).finish_non_exhaustive()
    }
}

impl UrlSigner {
    pub fn new(key: &[u8], timeout: Duration) -> std::io::Result<Self> {
        let mac = <Hmac<Sha256> as Mac>::new_from_slice(key)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
        Ok(UrlSigner { mac, timeout })
    }

    /// The configured key, else the data directory's key file (made on first
    /// use, readable by its owner only), else a random key for this process.
    pub fn open(configured: Option<&str>, data_dir: Option<&Path>, timeout: Duration) -> std::io::Result<Self> {
        if let Some(k) = configured.filter(|k| !k.is_empty()) {
            return UrlSigner::new(k.as_bytes(), timeout);
        }
        let Some(dir) = data_dir else { return UrlSigner::new(random_key().as_bytes(), timeout) };
        let path = dir.join(KEY_FILE);
        match std::fs::read_to_string(&path) {
            Ok(k) if !k.trim().is_empty() => return UrlSigner::new(k.trim().as_bytes(), timeout),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        std::fs::create_dir_all(dir)?;
        let key = random_key();
        let tmp = dir.join(format!("{KEY_FILE}.tmp"));
        write_private(&tmp, key.as_bytes())?;
        std::fs::rename(&tmp, &path)?;
        UrlSigner::new(key.as_bytes(), timeout)
    }

    /// The signature of a file id at a time with a nonce.
    pub fn sign(&self, file_id: &str, timestamp: &str, nonce: &str) -> String {
        base64::engine::general_purpose::URL_SAFE.encode(self.mac(file_id, timestamp, nonce).finalize().into_bytes())
    }

    /// A link to a file, signed now: `<base>/files/<id>/file-preview?…`.
    pub fn url(&self, base: &str, file_id: Uuid, now_secs: i64) -> String {
        let mut nonce = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut nonce);
        let (id, ts, nonce) = (file_id.to_string(), now_secs.to_string(), hex::encode(nonce));
        let sign = self.sign(&id, &ts, &nonce);
        format!("{}/files/{id}/file-preview?timestamp={ts}&nonce={nonce}&sign={sign}", base.trim_end_matches('/'))
    }

    /// Whether a link's parts are genuine and not yet expired at `now_secs`
    /// (the signature is compared in constant time).
    pub fn verify(&self, file_id: &str, timestamp: &str, nonce: &str, sign: &str, now_secs: i64) -> bool {
        let Ok(given) = base64::engine::general_purpose::URL_SAFE.decode(sign.trim()) else { return false };
        if self.mac(file_id, timestamp, nonce).verify_slice(&given).is_err() {
            return false;
        }
        let Ok(ts) = timestamp.trim().parse::<i64>() else { return false };
        let age = now_secs.saturating_sub(ts);
        u64::try_from(age).map_or(true, |age| age <= self.timeout.as_secs())
    }

    fn mac(&self, file_id: &str, timestamp: &str, nonce: &str) -> Hmac<Sha256> {
        let mut mac = self.mac.clone();
        mac.update(format!("file-preview|{file_id}|{timestamp}|{nonce}").as_bytes());
        mac
    }
}

fn random_key() -> String {
    let mut key = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut key);
    hex::encode(key)
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "2f0d9b7e-6a51-4c36-9f55-2b1c7d3e8a90";
    const NONCE: &str = "00112233445566778899aabbccddeeff";

    #[test]
    fn signatures_are_difys() {
        // Python: base64.urlsafe_b64encode(hmac.new(b"ferrify-test-secret",
        //   b"file-preview|<ID>|1764400000|<NONCE>", hashlib.sha256).digest())
        let s = UrlSigner::new(b"ferrify-test-secret", Duration::from_secs(300)).unwrap();
        assert_eq!(s.sign(ID, "1764400000", NONCE), "rqxobTuDPX7gMdzGOBtK8y6udXrs301KeYM_YaA2oT8=");
    }

    #[test]
    fn links_verify_until_they_expire() {
        let s = UrlSigner::new(b"k", Duration::from_secs(300)).unwrap();
        let sign = s.sign(ID, "1000", NONCE);
        assert!(s.verify(ID, "1000", NONCE, &sign, 1000));
        assert!(s.verify(ID, "1000", NONCE, &sign, 1300));
        assert!(!s.verify(ID, "1000", NONCE, &sign, 1301), "expired");
        assert!(!s.verify(ID, "1001", NONCE, &sign, 1000), "another time");
        assert!(!s.verify(ID, "1000", "ff", &sign, 1000), "another nonce");
        assert!(!s.verify("00000000-0000-0000-0000-000000000000", "1000", NONCE, &sign, 1000), "another file");
        assert!(!s.verify(ID, "1000", NONCE, "not base64!", 1000));
        assert!(!UrlSigner::new(b"other", Duration::from_secs(300)).unwrap().verify(ID, "1000", NONCE, &sign, 1000));
    }

    #[test]
    fn urls_carry_a_fresh_nonce_and_a_good_signature() {
        let s = UrlSigner::new(b"k", Duration::from_secs(300)).unwrap();
        let id = Uuid::parse_str(ID).unwrap();
        let (a, b) = (s.url("https://f.example/", id, 5), s.url("", id, 5));
        assert!(a.starts_with(&format!("https://f.example/files/{ID}/file-preview?timestamp=5&nonce=")), "{a}");
        assert!(b.starts_with(&format!("/files/{ID}/file-preview?")), "{b}");
        assert_ne!(a.split("nonce=").nth(1), b.split("nonce=").nth(1));
        let query: std::collections::HashMap<_, _> =
            a.split_once('?').unwrap().1.split('&').filter_map(|kv| kv.split_once('=')).collect();
        assert!(s.verify(ID, query["timestamp"], query["nonce"], query["sign"], 5));
    }

    #[test]
    fn the_key_is_kept_in_the_data_directory() {
        let dir = tempfile::tempdir().unwrap();
        let t = Duration::from_secs(300);
        let first = UrlSigner::open(None, Some(dir.path()), t).unwrap();
        let again = UrlSigner::open(None, Some(dir.path()), t).unwrap();
        assert_eq!(first.sign(ID, "1", NONCE), again.sign(ID, "1", NONCE));
        let configured = UrlSigner::open(Some("ferrify-test-secret"), Some(dir.path()), t).unwrap();
        assert_eq!(configured.sign(ID, "1764400000", NONCE), "rqxobTuDPX7gMdzGOBtK8y6udXrs301KeYM_YaA2oT8=");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE)).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "the key file is private");
        }
    }
}
