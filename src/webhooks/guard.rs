//! Where webhooks may be sent. By default the delivery worker refuses every
//! address a request from the server could reach but the internet could
//! not: loopback, private, link-local (which holds the cloud metadata
//! services), unique-local, carrier-grade NAT, multicast, broadcast and
//! unspecified addresses, IPv4 written inside IPv6 included. The check is
//! made on the address the request actually connects to, after DNS (so a
//! name that resolves to an internal address, or a DNS rebinding, is
//! refused too). `FLAGPOLE_WEBHOOK_ALLOW` lists networks (CIDR) or host
//! names that may be reached anyway, for teams whose receivers are internal.
//!
//! URLs may carry credentials (`https://user:secret@host/`); wherever one is
//! shown or audited they are replaced by `***` ([`redact`]).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::sync::Arc;

/// What may be reached although it is internal.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Guard {
    networks: Vec<(IpAddr, u8)>,
    hosts: Vec<String>,
}

impl Guard {
    /// Parses a comma-separated allow-list: CIDRs (`10.1.0.0/16`,
    /// `fd00::/8`), single addresses, or host names (`hooks.internal`).
    pub fn parse(list: &str) -> Result<Guard, String> {
        let mut guard = Guard::default();
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if let Some((ip, bits)) = item.split_once('/') {
                let ip: IpAddr = ip
                    .parse()
                    .map_err(|_| format!("{item:?} is not a network (CIDR)"))?;
                let max = if ip.is_ipv4() { 32 } else { 128 };
                let bits: u8 = bits
                    .parse()
                    .ok()
                    .filter(|b| *b <= max)
                    .ok_or_else(|| format!("{item:?} has a prefix length out of range"))?;
                guard.networks.push((ip, bits));
            } else if let Ok(ip) = item.parse::<IpAddr>() {
                guard
                    .networks
                    .push((ip, if ip.is_ipv4() { 32 } else { 128 }));
            } else if item
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.'))
            {
                guard.hosts.push(item.to_ascii_lowercase());
            } else {
                return Err(format!("{item:?} is neither a network nor a host name"));
            }
        }
        Ok(guard)
    }

    /// Whether the host (a name, as written in the URL) is allowed by name.
    pub fn allows_host(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.hosts.contains(&host)
    }

    /// Whether a request may connect to `ip`.
    pub fn allows(&self, ip: IpAddr) -> bool {
        !is_internal(ip)
            || self
                .networks
                .iter()
                .any(|(net, bits)| contains(*net, *bits, ip))
    }

    /// Why a URL may not be sent to before any lookup (its host is an
    /// address or a `localhost` name that is not allowed); `None` when it
    /// may be tried (names are checked again when they resolve).
    pub fn refuses_url(&self, url: &reqwest::Url) -> Option<String> {
        match url.host()? {
            url::Host::Ipv4(ip) => (!self.allows(IpAddr::V4(ip))).then(|| refusal(&ip.to_string())),
            url::Host::Ipv6(ip) => (!self.allows(IpAddr::V6(ip))).then(|| refusal(&ip.to_string())),
            url::Host::Domain(name) => {
                let name = name.trim_end_matches('.').to_ascii_lowercase();
                let local = name == "localhost" || name.ends_with(".localhost");
                (local && !self.allows_host(&name)).then(|| refusal(&name))
            }
        }
    }
}

fn refusal(what: &str) -> String {
    format!(
        "{what} is a loopback, private or otherwise internal address, which webhooks are not sent to. \
         To allow it, add it to FLAGPOLE_WEBHOOK_ALLOW."
    )
}

fn contains(net: IpAddr, bits: u8, ip: IpAddr) -> bool {
    match (net, canonical(ip)) {
        (IpAddr::V4(net), IpAddr::V4(ip)) => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            u32::from(net) & mask == u32::from(ip) & mask
        }
        (IpAddr::V6(net), IpAddr::V6(ip)) => {
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits)
            };
            u128::from(net) & mask == u128::from(ip) & mask
        }
        _ => false,
    }
}

/// An IPv4 address written as IPv6 (`::ffff:127.0.0.1`, `::127.0.0.1`) as
/// the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                if s[..6] == [0, 0, 0, 0, 0, 0] && !v6.is_loopback() && !v6.is_unspecified() {
                    IpAddr::V4(Ipv4Addr::from(u128::from(v6) as u32))
                } else {
                    IpAddr::V6(v6)
                }
            }
        },
        v4 => v4,
    }
}

/// Whether an address is one the internet cannot reach.
pub fn is_internal(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(ip) => {
            let o = ip.octets();
            ip.is_loopback()
                || ip.is_private()
                || ip.is_link_local()
                || ip.is_unspecified()
                || ip.is_broadcast()
                || ip.is_multicast()
                || ip.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (o[1] & 0xc0) == 64) // 100.64.0.0/10, carrier-grade NAT
                || (o[0] == 192 && o[1] == 0 && o[2] == 0) // 192.0.0.0/24, protocol assignments
                || (o[0] == 198 && (o[1] & 0xfe) == 18) // 198.18.0.0/15, benchmarking
                || o[0] >= 240 // reserved
        }
        IpAddr::V6(ip) => {
            let s = ip.segments();
            ip.is_loopback()
                || ip.is_unspecified()
                || ip.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // fc00::/7, unique local
                || (s[0] & 0xffc0) == 0xfe80 // fe80::/10, link local
                || (s[0] & 0xffc0) == 0xfec0 // fec0::/10, site local
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
                || (s[0] == 0x0064 && s[1] == 0xff9b) // 64:ff9b::/96, NAT64 of IPv4
                || s[0] == 0x2002 // 6to4, which embeds an IPv4 address
                || ip == Ipv6Addr::from(1u128)
        }
    }
}

/// A DNS resolver for the delivery client that drops internal addresses
/// (unless allowed), so the connection can only go where the guard allows.
pub struct GuardedResolver {
    pub guard: Arc<Guard>,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let guard = self.guard.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let lookup = host.clone();
            let addresses: Vec<SocketAddr> =
                tokio::task::spawn_blocking(move || (lookup.as_str(), 0).to_socket_addrs())
                    .await
                    .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)??
                    .collect();
            let by_name = guard.allows_host(&host);
            let allowed: Vec<SocketAddr> = addresses
                .iter()
                .copied()
                .filter(|a| by_name || guard.allows(a.ip()))
                .collect();
            if allowed.is_empty() {
                let shown = addresses
                    .first()
                    .map(|a| a.ip().to_string())
                    .unwrap_or_else(|| host.clone());
                return Err(format!("{host} resolves to {}", refusal(&shown)).into());
            }
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The URL with any credentials in it replaced by `***`.
pub fn redact(url: &str) -> String {
    let Ok(mut parsed) = reqwest::Url::parse(url) else {
        return url.to_string();
    };
    if parsed.username().is_empty() && parsed.password().is_none() {
        return url.to_string();
    }
    if !parsed.username().is_empty() {
        let _ = parsed.set_username("***");
    }
    if parsed.password().is_some() {
        let _ = parsed.set_password(Some("***"));
    }
    parsed.to_string()
}

/// A URL submitted from a form that showed `stored` redacted: where the
/// credentials are still `***`, the stored ones are kept.
pub fn keep_credentials(submitted: &str, stored: &str) -> String {
    if !submitted.contains("***") {
        return submitted.to_string();
    }
    let (Ok(mut new), Ok(old)) = (reqwest::Url::parse(submitted), reqwest::Url::parse(stored))
    else {
        return submitted.to_string();
    };
    if new.username() == "***" {
        let _ = new.set_username(old.username());
    }
    if new.password() == Some("***") {
        let _ = new.set_password(old.password());
    }
    new.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn internal_addresses_in_every_spelling_are_refused() {
        let guard = Guard::default();
        for internal in [
            "127.0.0.1",
            "127.1.2.3",
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "ff02::1",
        ] {
            assert!(!guard.allows(ip(internal)), "{internal}");
        }
        for public in ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111"] {
            assert!(guard.allows(ip(public)), "{public}");
        }
        // The URL parser turns the short, decimal and hex forms into addresses.
        for url in [
            "http://127.1/",
            "http://2130706433/",
            "http://0x7f000001/",
            "http://[::1]/",
            "http://0.0.0.0/",
            "http://localhost:8080/",
            "http://api.localhost/",
        ] {
            let parsed = reqwest::Url::parse(url).unwrap();
            assert!(guard.refuses_url(&parsed).is_some(), "{url}");
        }
        assert!(guard
            .refuses_url(&reqwest::Url::parse("https://hooks.example.com/x").unwrap())
            .is_none());
    }

    #[test]
    fn the_allow_list_opens_networks_and_hosts() {
        let guard = Guard::parse("10.1.0.0/16, 127.0.0.1, hooks.internal").unwrap();
        assert!(guard.allows(ip("10.1.2.3")));
        assert!(!guard.allows(ip("10.2.0.1")));
        assert!(guard.allows(ip("127.0.0.1")));
        assert!(!guard.allows(ip("127.0.0.2")));
        assert!(guard.allows_host("hooks.internal"));
        assert!(Guard::parse("10.0.0.0/40").is_err());
        assert!(Guard::parse("not a host!").is_err());
    }

    #[tokio::test]
    async fn a_name_that_resolves_to_an_internal_address_is_refused_when_resolved() {
        use reqwest::dns::Resolve;
        use std::str::FromStr;
        let refused = GuardedResolver {
            guard: Arc::new(Guard::default()),
        };
        let name = reqwest::dns::Name::from_str("localhost").unwrap();
        let error = match refused.resolve(name).await {
            Ok(_) => panic!("localhost resolved to an allowed address"),
            Err(e) => e.to_string(),
        };
        assert!(error.contains("internal address"), "{error}");
        let allowed = GuardedResolver {
            guard: Arc::new(Guard::parse("127.0.0.0/8, ::1").unwrap()),
        };
        let name = reqwest::dns::Name::from_str("localhost").unwrap();
        assert!(allowed.resolve(name).await.is_ok());
    }

    #[test]
    fn credentials_are_redacted_and_kept_when_edited() {
        let stored = "https://user:s3cret@hooks.example.com/in?x=1";
        let shown = redact(stored);
        assert_eq!(shown, "https://***:***@hooks.example.com/in?x=1");
        assert!(!shown.contains("s3cret"));
        assert_eq!(
            redact("https://hooks.example.com/"),
            "https://hooks.example.com/"
        );
        assert_eq!(keep_credentials(&shown, stored), stored);
        assert_eq!(
            keep_credentials("https://other:pw@hooks.example.com/in", stored),
            "https://other:pw@hooks.example.com/in"
        );
    }
}
