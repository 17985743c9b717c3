//! Outbound HTTP of workflow nodes: the private-network guard and a bounded
//! fetch of remote files.
//!
//! Unless [`WorkflowSettings::allow_private_network`] is set, a request may
//! only reach public unicast addresses: loopback, private (RFC 1918), CGNAT,
//! link-local, unspecified, multicast, documentation, unique-local IPv6,
//! IPv4-mapped/-translated private addresses and the like are refused.
//!
//! The guard resolves the host itself, checks **every** address, and pins
//! the request client to the checked addresses, so a second DNS answer
//! (DNS rebinding) cannot send the connection elsewhere. Redirects go
//! through the same checks: other host names through a checking resolver,
//! IP literals through the redirect policy. Guarded clients ignore the
//! system proxy settings (a proxy would connect on our behalf, unchecked).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::{redirect, Client, ClientBuilder, Url};

use super::WorkflowSettings;

/// Most redirects a request follows.
pub const MAX_REDIRECTS: usize = 10;

/// The prefix of every refusal, so errors name the guard.
const GUARD: &str = "blocked by the private-network guard";

/// What makes an IPv4 address non-public, if anything.
fn v4_reason(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        (0, _, _) => "an unspecified (0.0.0.0/8) address",
        (10, _, _) => "a private address",
        (100, 64..=127, _) => "a shared (CGNAT) address",
        (127, _, _) => "a loopback address",
        (169, 254, _) => "a link-local address",
        (172, 16..=31, _) => "a private address",
        (192, 0, 0) => "an IETF protocol address",
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "a documentation address",
        (192, 88, 99) => "a 6to4 relay address",
        (192, 168, _) => "a private address",
        (198, 18..=19, _) => "a benchmarking address",
        (224..=239, _, _) => "a multicast address",
        (240..=255, _, _) => "a reserved or broadcast address",
        _ => return None,
    })
}

/// What makes an IPv6 address non-public, if anything (embedded IPv4
/// addresses are judged as IPv4).
fn v6_reason(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    if ip.is_unspecified() {
        return Some("an unspecified address");
    }
    if ip.is_loopback() {
        return Some("a loopback address");
    }
    // ::ffff:a.b.c.d (mapped) and ::a.b.c.d (deprecated compatible).
    if s[..5] == [0; 5] && (s[5] == 0xffff || s[5] == 0) {
        let v4 = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
        return if s[5] == 0 {
            Some("an IPv4-compatible address")
        } else {
            v4_reason(v4).map(|_| "an IPv4-mapped non-public address")
        };
    }
    // 64:ff9b::/96 NAT64 well-known prefix: judge the embedded IPv4.
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        let v4 = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
        return v4_reason(v4).map(|_| "a NAT64 non-public address");
    }
    // 2002::/16 6to4: judge the embedded IPv4.
    if s[0] == 0x2002 {
        let v4 = Ipv4Addr::new((s[1] >> 8) as u8, s[1] as u8, (s[2] >> 8) as u8, s[2] as u8);
        return v4_reason(v4).map(|_| "a 6to4 non-public address");
    }
    Some(match s[0] {
        0x0064 if s[1] == 0xff9b && s[2] == 1 => "a local-use NAT64 address",
        0x0100 if s[1..4] == [0, 0, 0] => "a discard-only address",
        0x2001 if s[1] < 0x0200 => "an IETF protocol (Teredo, ORCHID…) address",
        0x2001 if s[1] == 0x0db8 => "a documentation address",
        0x3fff if s[1] < 0x1000 => "a documentation address",
        x if x & 0xfe00 == 0xfc00 => "a unique-local address",
        x if x & 0xffc0 == 0xfe80 => "a link-local address",
        x if x & 0xffc0 == 0xfec0 => "a site-local address",
        x if x & 0xff00 == 0xff00 => "a multicast address",
        _ => return None,
    })
}

/// Why an address may not be reached, or `None` for a public one.
pub fn blocked_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_reason(v4),
        IpAddr::V6(v6) => v6_reason(v6),
    }
}

/// Checks one address: `Err` names the guard, the address and why.
pub fn check_ip(ip: IpAddr) -> Result<(), String> {
    match blocked_reason(ip) {
        Some(why) => Err(format!(
            "{GUARD}: {ip} is {why} (set [security] allow_private_network = true to allow private networks)"
        )),
        None => Ok(()),
    }
}

/// Parses a URL and refuses schemes other than http and https.
pub fn parse_url(url: &str) -> Result<Url, String> {
    let parsed = Url::parse(url.trim()).map_err(|e| format!("invalid URL {url:?}: {e}"))?;
    match parsed.scheme() {
        "http" | "https" => {}
        other => return Err(format!("URL scheme {other:?} is not allowed (only http and https)")),
    }
    if parsed.host().is_none() {
        return Err(format!("URL {url:?} has no host"));
    }
    Ok(parsed)
}

/// Resolves a host name and checks every address it resolves to.
pub async fn resolve_checked(host: &str) -> Result<Vec<SocketAddr>, String> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, 0u16))
        .await
        .map_err(|e| format!("cannot resolve host {host:?}: {e}"))?
        .collect();
    if addrs.is_empty() {
        return Err(format!("cannot resolve host {host:?}: no addresses"));
    }
    for a in &addrs {
        check_ip(a.ip()).map_err(|e| format!("{e} (host {host:?})"))?;
    }
    Ok(addrs)
}

/// The addresses a request to `url` may connect to: `None` for an IP
/// literal (already checked), the checked addresses of a host name.
async fn check_url(url: &Url) -> Result<Option<(String, Vec<SocketAddr>)>, String> {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => check_ip(IpAddr::V4(ip)).map(|_| None),
        Some(url::Host::Ipv6(ip)) => check_ip(IpAddr::V6(ip)).map(|_| None),
        Some(url::Host::Domain(d)) => {
            let addrs = resolve_checked(d).await?;
            Ok(Some((d.to_string(), addrs)))
        }
        None => Err(format!("URL {url} has no host")),
    }
}

/// A DNS resolver that refuses names resolving to a non-public address
/// (used for hosts reached through redirects).
struct GuardedResolver;

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs =
                resolve_checked(&host).await.map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { e.into() })?;
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// The redirect policy: at most [`MAX_REDIRECTS`], http(s) only, and (when
/// guarded) no IP literal that is not public.
fn redirect_policy(guarded: bool) -> redirect::Policy {
    redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() >= MAX_REDIRECTS {
            return attempt.error(format!("too many redirects (more than {MAX_REDIRECTS})"));
        }
        let url = attempt.url();
        if !matches!(url.scheme(), "http" | "https") {
            let msg = format!("redirect to a {:?} URL is not allowed", url.scheme());
            return attempt.error(msg);
        }
        if guarded {
            let ip = match url.host() {
                Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
                Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
                _ => None,
            };
            if let Some(Err(e)) = ip.map(check_ip) {
                return attempt.error(e);
            }
        }
        attempt.follow()
    })
}

/// A client for one request to `url`, built from `builder` with the guard
/// applied unless private networks are allowed. Refuses bad URLs and
/// non-public targets with an error naming the guard.
pub async fn client_for(url: &Url, settings: &WorkflowSettings, builder: ClientBuilder) -> Result<Client, String> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("URL scheme {:?} is not allowed (only http and https)", url.scheme()));
    }
    let builder = if settings.allow_private_network {
        builder.redirect(redirect_policy(false))
    } else {
        let mut b = builder.redirect(redirect_policy(true)).no_proxy().dns_resolver(Arc::new(GuardedResolver));
        if let Some((host, addrs)) = check_url(url).await? {
            b = b.resolve_to_addrs(&host, &addrs);
        }
        b
    };
    builder.build().map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// An error's text with its sources.
pub use crate::error::error_chain as error_text;

/// A file name from a `Content-Disposition` header (`filename*=` first).
pub fn disposition_filename(header: &str) -> Option<String> {
    let mut plain = None;
    for part in header.split(';').map(str::trim) {
        let Some((k, v)) = part.split_once('=') else { continue };
        let v = v.trim();
        match k.trim().to_ascii_lowercase().as_str() {
            "filename*" => {
                // RFC 5987: charset'lang'percent-encoded
                let encoded = v.splitn(3, '\'').nth(2).unwrap_or(v);
                let decoded = percent_decode(encoded);
                if !decoded.is_empty() {
                    return Some(decoded);
                }
            }
            "filename" => {
                let name = v.trim_matches('"').to_string();
                if !name.is_empty() {
                    plain = Some(name);
                }
            }
            _ => {}
        }
    }
    plain
}

fn percent_decode(s: &str) -> String {
    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).map(|d| d as u8)
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push(h * 16 + l);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The last path segment of a URL, percent-decoded, if any.
pub fn url_filename(url: &Url) -> Option<String> {
    let last = url.path_segments()?.next_back()?;
    let name = percent_decode(last);
    (!name.is_empty()).then_some(name)
}

/// Reads a response body, failing once it exceeds `max_bytes`.
pub async fn read_limited(mut resp: reqwest::Response, max_bytes: usize) -> Result<Vec<u8>, String> {
    if let Some(len) = resp.content_length() {
        if len > max_bytes as u64 {
            return Err(format!("response too large: {len} bytes (limit {max_bytes})"));
        }
    }
    let mut out = Vec::new();
    while let Some(chunk) =
        resp.chunk().await.map_err(|e| format!("reading the response failed: {}", error_text(&e)))?
    {
        if out.len() + chunk.len() > max_bytes {
            return Err(format!("response too large: more than {max_bytes} bytes"));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// GETs a remote file through the guard: its bytes, content type and file
/// name (from `Content-Disposition`, else the URL's last path segment).
/// Fails on non-2xx statuses, bodies over `max_bytes`, and after `timeout`.
pub async fn fetch(
    url: &str,
    settings: &WorkflowSettings,
    max_bytes: usize,
    timeout: Duration,
) -> Result<(Vec<u8>, Option<String>, Option<String>), String> {
    let parsed = parse_url(url)?;
    let builder = Client::builder().timeout(timeout).connect_timeout(timeout.min(Duration::from_secs(10)));
    let client = client_for(&parsed, settings, builder).await?;
    let work = async {
        let resp = client
            .get(parsed.clone())
            .send()
            .await
            .map_err(|e| format!("fetching {parsed} failed: {}", error_text(&e)))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(format!("fetching {parsed} failed: HTTP {}", status.as_u16()));
        }
        let content_type = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty());
        let filename = resp
            .headers()
            .get(reqwest::header::CONTENT_DISPOSITION)
            .and_then(|v| v.to_str().ok())
            .and_then(disposition_filename)
            .or_else(|| url_filename(resp.url()));
        let bytes = read_limited(resp, max_bytes).await.map_err(|e| format!("fetching {parsed}: {e}"))?;
        Ok((bytes, content_type, filename))
    };
    tokio::time::timeout(timeout, work).await.map_err(|_| format!("fetching {parsed} timed out after {timeout:?}"))?
}

/// What a remote file's headers tell about it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RemoteInfo {
    pub filename: Option<String>,
    pub mime_type: Option<String>,
    pub size: Option<u64>,
}

/// Asks a remote file's headers (HEAD) through the guard: name (from
/// `Content-Disposition`, else the URL), type and size. A refused or
/// unreachable URL is an error; an answer other than 2xx tells nothing
/// (some servers refuse HEAD) and gives the defaults.
pub async fn probe(url: &str, settings: &WorkflowSettings, timeout: Duration) -> Result<RemoteInfo, String> {
    let parsed = parse_url(url)?;
    let builder = Client::builder().timeout(timeout).connect_timeout(timeout.min(Duration::from_secs(10)));
    let client = client_for(&parsed, settings, builder).await?;
    let fallback = RemoteInfo { filename: url_filename(&parsed), ..RemoteInfo::default() };
    let resp = tokio::time::timeout(timeout, client.head(parsed.clone()).send())
        .await
        .map_err(|_| format!("{parsed} did not answer within {timeout:?}"))?
        .map_err(|e| format!("cannot reach {parsed}: {}", error_text(&e)))?;
    if !resp.status().is_success() {
        return Ok(fallback);
    }
    let header = |name: reqwest::header::HeaderName| {
        resp.headers().get(name).and_then(|v| v.to_str().ok()).map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
    };
    Ok(RemoteInfo {
        filename: header(reqwest::header::CONTENT_DISPOSITION)
            .as_deref()
            .and_then(disposition_filename)
            .or_else(|| url_filename(resp.url())),
        mime_type: header(reqwest::header::CONTENT_TYPE),
        size: header(reqwest::header::CONTENT_LENGTH).and_then(|s| s.parse().ok()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(s: &str) -> bool {
        let ip: IpAddr = s.parse().unwrap();
        check_ip(ip).is_err()
    }

    #[test]
    fn non_public_addresses_are_refused() {
        for s in [
            "127.0.0.1",
            "127.8.9.10",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "192.0.2.1",
            "::1",
            "::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::10.0.0.1",
            "2002:0a00:0001::1",
            "2001:db8::1",
            "2001::1",
        ] {
            assert!(refused(s), "{s} should be refused");
        }
        let e = check_ip("127.0.0.1".parse().unwrap()).unwrap_err();
        assert!(e.contains("private-network guard") && e.contains("loopback"), "{e}");
    }

    #[test]
    fn public_addresses_pass() {
        for s in [
            "1.1.1.1",
            "8.8.8.8",
            "93.184.216.34",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700:4700::1111",
            "2a00:1450:4001::200e",
            "::ffff:8.8.8.8",
            "64:ff9b::8.8.8.8",
        ] {
            assert!(!refused(s), "{s} should pass");
        }
    }

    #[test]
    fn only_http_schemes() {
        assert!(parse_url("http://example.com/a").is_ok());
        assert!(parse_url("https://example.com").is_ok());
        for bad in ["file:///etc/passwd", "ftp://example.com/x", "gopher://x", "not a url", "http://"] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn literal_and_odd_ipv4_forms_are_checked_without_dns() {
        for url in [
            "http://127.0.0.1:8080/",
            "http://2130706433/",
            "http://0x7f.1/",
            "http://[::1]/",
            "http://[::ffff:7f00:1]/",
        ] {
            let u = parse_url(url).unwrap();
            let e = check_url(&u).await.unwrap_err();
            assert!(e.contains("private-network guard"), "{url}: {e}");
        }
        let u = parse_url("http://1.1.1.1/x").unwrap();
        assert_eq!(check_url(&u).await, Ok(None));
        let settings = WorkflowSettings::default();
        let e = client_for(&parse_url("http://10.0.0.1/").unwrap(), &settings, Client::builder()).await.unwrap_err();
        assert!(e.contains("private-network guard"));
        let e = fetch("http://127.0.0.1:9/x", &settings, 10, Duration::from_secs(1)).await.unwrap_err();
        assert!(e.contains("private-network guard"));
        let e = fetch("file:///etc/passwd", &settings, 10, Duration::from_secs(1)).await.unwrap_err();
        assert!(e.contains("not allowed"));
    }

    #[test]
    fn file_names() {
        assert_eq!(disposition_filename("attachment; filename=\"a b.pdf\"").as_deref(), Some("a b.pdf"));
        assert_eq!(
            disposition_filename("attachment; filename*=UTF-8''%E2%82%AC.txt; filename=x").as_deref(),
            Some("€.txt")
        );
        assert_eq!(disposition_filename("inline"), None);
        let u = Url::parse("http://h/dir/r%C3%A9sum%C3%A9.csv?x=1").unwrap();
        assert_eq!(url_filename(&u).as_deref(), Some("résumé.csv"));
        assert_eq!(url_filename(&Url::parse("http://h/").unwrap()), None);
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }
}
