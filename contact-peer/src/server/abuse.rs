//! Limits on what one source (an address prefix) may take from the server (issue 10):
//! the volume of answers sent to addresses that have not proven they receive them
//! ([`AnswerLimit`]), and the contacts and lists one source may hold ([`Quotas`]). Prefixes
//! the operator trusts ([`Cidr`], `server --trust`) are exempt; none is by default, loopback
//! included.
//!
//! Like the error budget, counts are whole numbers (milli-bytes, milliseconds), so the same
//! inputs give the same decisions; the tables are bounded, and a full table never resets
//! anyone's count: it is swept of entries equivalent to absent ones, and a new source waits
//! when that frees nothing.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use contact_proto::{Answer, Command, Cookie, Status};
use contact_registry::Registry;

use super::ServerConfig;
use super::error_budget::PrefixBuckets;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use thiserror::Error;

/// The server's key for address cookies: 32 random bytes, never shown.
#[derive(Clone, PartialEq, Eq)]
pub struct CookieKey(pub [u8; 32]);

impl CookieKey {
    /// A key from the operating system's random source.
    pub fn random() -> Self {
        let mut key = [0; 32];
        // Without an OS random source there is nothing better to do than stop.
        getrandom::fill(&mut key).expect("the operating system's random source");
        Self(key)
    }

    fn mac(&self, ip: IpAddr) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("any key length");
        mac.update(b"contact address cookie v1\0");
        match ip.to_canonical() {
            IpAddr::V4(v4) => mac.update(&v4.octets()),
            IpAddr::V6(v6) => mac.update(&v6.octets()),
        }
        mac
    }

    /// The cookie of `ip`: the first 64 bits of HMAC-SHA256(key, label | address).
    pub(crate) fn cookie(&self, ip: IpAddr) -> Cookie {
        let tag = self.mac(ip).finalize().into_bytes();
        let mut first = [0; 8];
        first.copy_from_slice(&tag[..8]);
        Cookie(u64::from_be_bytes(first))
    }

    /// Whether `cookie` is `ip`'s, compared in constant time.
    pub(crate) fn verify(&self, ip: IpAddr, cookie: Cookie) -> bool {
        self.mac(ip)
            .verify_truncated_left(&cookie.0.to_be_bytes())
            .is_ok()
    }
}

impl fmt::Debug for CookieKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CookieKey(..)")
    }
}

/// An address prefix, `10.0.0.0/8`, `2001:db8::/32`, or one address (`127.0.0.1` is
/// `127.0.0.1/32`).
///
/// ```
/// use contact_peer::Cidr;
/// let lan: Cidr = "10.1.0.0/16".parse()?;
/// assert!(lan.contains("10.1.200.3".parse()?));
/// assert!(!lan.contains("10.2.0.1".parse()?));
/// assert!(lan.contains("::ffff:10.1.0.9".parse()?)); // IPv4-mapped counts as IPv4
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    addr: IpAddr,
    len: u8,
}

/// Why a string is not a [`Cidr`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum CidrError {
    /// The address part does not parse.
    #[error("not an IP address: {0:?}")]
    Address(String),
    /// The length is not a number within the address's bits.
    #[error("bad prefix length {0:?}")]
    Length(String),
}

impl Cidr {
    /// The prefix of `addr`'s first `len` bits (at most 32 for IPv4, 128 for IPv6).
    pub fn new(addr: IpAddr, len: u8) -> Option<Self> {
        let addr = addr.to_canonical();
        let max = if addr.is_ipv4() { 32 } else { 128 };
        (len <= max).then(|| Self {
            addr: mask(addr, len),
            len,
        })
    }

    /// Whether `ip` is inside.
    pub fn contains(&self, ip: IpAddr) -> bool {
        // By family on the integers: checked for every datagram's source and every answer's
        // destination, so kept to a few instructions.
        match (ip.to_canonical(), self.addr) {
            (IpAddr::V4(ip), IpAddr::V4(net)) => {
                let m = u32::MAX
                    .checked_shl(32 - u32::from(self.len.min(32)))
                    .unwrap_or(0);
                u32::from(ip) & m == u32::from(net)
            }
            (IpAddr::V6(ip), IpAddr::V6(net)) => {
                let m = u128::MAX
                    .checked_shl(128 - u32::from(self.len.min(128)))
                    .unwrap_or(0);
                u128::from(ip) & m == u128::from(net)
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = CidrError;
    fn from_str(s: &str) -> Result<Self, CidrError> {
        let (a, l) = s.split_once('/').map_or((s, None), |(a, l)| (a, Some(l)));
        let addr: IpAddr = a.parse().map_err(|_| CidrError::Address(a.into()))?;
        let addr = addr.to_canonical();
        let len = match l {
            None if addr.is_ipv4() => 32,
            None => 128,
            Some(l) => l.parse().map_err(|_| CidrError::Length(l.into()))?,
        };
        Self::new(addr, len).ok_or_else(|| CidrError::Length(len.to_string()))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// `ip` with all but its first `len` bits cleared.
fn mask(ip: IpAddr, len: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let m = u32::MAX
                .checked_shl(32 - u32::from(len.min(32)))
                .unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(bits & m))
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let m = u128::MAX
                .checked_shl(128 - u32::from(len.min(128)))
                .unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(bits & m))
        }
    }
}

/// How sources are grouped: the prefix lengths that count as one source, and the prefixes
/// exempt from every limit here.
#[derive(Debug, Clone)]
pub(crate) struct Sources {
    pub(crate) v4_len: u8,
    pub(crate) v6_len: u8,
    pub(crate) trusted: Vec<Cidr>,
}

impl Sources {
    /// The prefix lengths and trusted prefixes of `config`.
    pub(crate) fn new(config: &ServerConfig) -> Self {
        Self {
            v4_len: config.source_prefix_v4,
            v6_len: config.source_prefix_v6,
            trusted: config.trust.clone(),
        }
    }

    /// The prefix `ip` is counted by, or `None` when the operator trusts it.
    pub(crate) fn limited(&self, ip: IpAddr) -> Option<IpAddr> {
        (!self.trusted(ip)).then(|| self.prefix(ip))
    }

    /// The prefix `ip` is counted by.
    pub(crate) fn prefix(&self, ip: IpAddr) -> IpAddr {
        let ip = ip.to_canonical();
        let len = if ip.is_ipv4() {
            self.v4_len
        } else {
            self.v6_len
        };
        mask(ip, len)
    }

    /// Whether the operator trusts `ip` (`--trust`).
    pub(crate) fn trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|c| c.contains(ip))
    }
}

/// Token buckets in bytes: one per source prefix and one for the whole server, for the
/// answers sent to addresses that have not proven they receive them.
#[derive(Debug)]
pub(crate) struct AnswerLimit {
    /// Bytes per second and burst per prefix; 0 rate: no limit.
    rate: u64,
    burst: u64,
    total_rate: u64,
    total_burst: u64,
    /// Milli-bytes per prefix.
    buckets: PrefixBuckets,
    total: (u64, u64),
    dropped: u64,
    dropped_bytes: u64,
    proven: u64,
}

impl AnswerLimit {
    /// Prefixes tracked at most.
    const MAX_SOURCES: usize = 65_536;

    pub(crate) fn new(rate: u64, burst: u64, total_rate: u64, total_burst: u64) -> Self {
        Self {
            rate,
            burst: burst.max(1),
            total_rate,
            total_burst: total_burst.max(1),
            buckets: PrefixBuckets::new(Self::MAX_SOURCES),
            total: (total_burst.saturating_mul(1000), 0),
            dropped: 0,
            dropped_bytes: 0,
            proven: 0,
        }
    }

    /// Counts an answer to a proven address (not limited).
    pub(crate) fn count_proven(&mut self) {
        self.proven += 1;
    }

    /// Answers to proven addresses so far.
    pub(crate) fn proven(&self) -> u64 {
        self.proven
    }

    /// Whether `len` more bytes may go to `prefix` at `now_ms`; takes them if so, counts
    /// the drop if not.
    pub(crate) fn allow(&mut self, now_ms: u64, prefix: IpAddr, len: usize) -> bool {
        let len = (len as u64).saturating_mul(1000);
        let ok = self.take_total(now_ms, len, false) && self.take_source(now_ms, prefix, len);
        if ok {
            self.take_total(now_ms, len, true);
        } else {
            self.dropped += 1;
            self.dropped_bytes += len / 1000;
        }
        ok
    }

    fn take_total(&mut self, now_ms: u64, len: u64, commit: bool) -> bool {
        if self.total_rate == 0 {
            return true;
        }
        let full = self.total_burst.saturating_mul(1000);
        let (tokens, last) = &mut self.total;
        let refill = now_ms.saturating_sub(*last).saturating_mul(self.total_rate);
        *tokens = tokens.saturating_add(refill).min(full);
        *last = (*last).max(now_ms);
        if *tokens < len {
            return false;
        }
        if commit {
            *tokens -= len;
        }
        true
    }

    fn take_source(&mut self, now_ms: u64, prefix: IpAddr, len: u64) -> bool {
        if self.rate == 0 {
            return true;
        }
        let full = self.burst.saturating_mul(1000);
        self.buckets.take(now_ms, prefix, self.rate, full, len)
    }

    /// Answers not sent, and their bytes.
    pub(crate) fn dropped(&self) -> (u64, u64) {
        (self.dropped, self.dropped_bytes)
    }
}

/// How often each source prefix may `save`: a bucket of `burst` saves, one more every
/// `interval_ms`. Counted in milliseconds of credit; the table is bounded like the others.
#[derive(Debug)]
pub(crate) struct SaveRate {
    interval_ms: u64,
    burst: u64,
    /// Milliseconds of credit per prefix.
    buckets: PrefixBuckets,
}

impl SaveRate {
    const MAX_SOURCES: usize = 4096;

    /// Saves a source prefix may make at once, before it waits one interval for each.
    const BURST: u64 = 5;

    /// The save rate of `config` (`save_interval`), for the server's driver and for a
    /// cluster node's front alike.
    pub(crate) fn new(config: &ServerConfig) -> Self {
        Self {
            interval_ms: u64::try_from(config.save_interval.as_millis()).unwrap_or(u64::MAX),
            burst: Self::BURST,
            buckets: PrefixBuckets::new(Self::MAX_SOURCES),
        }
    }

    /// Whether `prefix` may save at `now_ms`; takes one save if so.
    pub(crate) fn allow(&mut self, now_ms: u64, prefix: IpAddr) -> bool {
        if self.interval_ms == 0 {
            return true;
        }
        let full = self.burst.saturating_mul(self.interval_ms);
        self.buckets.take(now_ms, prefix, 1, full, self.interval_ms)
    }
}

/// What a command takes from its source's quota, or gives back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Held {
    /// `register NAME`: one contact.
    Contact(String),
    /// `create LIST`: one list.
    List(String),
    /// `exit NAME`: its registering source's contact back.
    Exit(String),
}

impl Held {
    /// What `command` would take or give back, if anything.
    pub(crate) fn of(command: &Command) -> Option<Self> {
        match command {
            Command::Register { name, .. } => Some(Self::Contact(name.as_str().to_owned())),
            Command::Create { list } => Some(Self::List(list.as_str().to_owned())),
            Command::Exit { name } => Some(Self::Exit(name.as_str().to_owned())),
            _ => None,
        }
    }
}

/// How many contacts and lists each source prefix holds (registered or created, and not
/// removed since), against `--max-contacts-per-source` and `--max-lists-per-source`. One
/// table for both servers: [`ServerCore`](super::ServerCore) and the replicated machine,
/// which keeps it in its snapshots, so that every replica refuses the same commands.
#[derive(Debug, Default)]
pub(crate) struct Quotas {
    pub(crate) max_contacts: usize,
    pub(crate) max_lists: usize,
    /// Per prefix: (contacts, lists).
    held: HashMap<IpAddr, (usize, usize)>,
    /// Who registered each contact, to give the count back when it exits.
    contact_owner: HashMap<String, IpAddr>,
}

impl Quotas {
    /// The quotas of `config` (by default a quarter of each registry limit, at least 1).
    pub(crate) fn new(config: &ServerConfig) -> Self {
        Self {
            max_contacts: (config.max_contacts_per_source)
                .unwrap_or((config.limits.max_contacts / 4).max(1)),
            max_lists: (config.max_lists_per_source)
                .unwrap_or((config.limits.max_lists / 4).max(1)),
            ..Self::default()
        }
    }

    /// The same quotas, holding nothing.
    pub(crate) fn new_like(other: &Self) -> Self {
        Self {
            max_contacts: other.max_contacts,
            max_lists: other.max_lists,
            ..Self::default()
        }
    }

    /// Counts the contacts and lists of a registry a server starts with (loaded, or
    /// replayed from a journal) against the quotas of their sources' prefixes. A contact
    /// counts for its registered address: the source that registered it under `--auth`
    /// (where `register` must come from that address), the best guess without. A list
    /// counts for the address the registry kept with it ([`Registry::list_creator`]); one
    /// without (loaded from a `save` file, or from a journal older than the field) counts
    /// for nobody.
    pub(crate) fn count_registry(&mut self, registry: &Registry, sources: &Sources) {
        for c in registry.contacts().filter(|c| !sources.trusted(c.ip())) {
            self.registered(sources.prefix(c.ip()), c.name().as_str());
        }
        let creators = (registry.lists())
            .filter_map(|l| registry.list_creator(l))
            .filter(|ip| !sources.trusted(*ip));
        for ip in creators {
            self.created(sources.prefix(ip), 1);
        }
    }

    /// The refusal (476) of what `held` would take from `prefix` (`None`: trusted, never
    /// refused). It comes after the reference's checks (455/456, 457/458): only a command
    /// the registry would accept counts against the quota.
    pub(crate) fn refuse(
        &self,
        registry: &Registry,
        prefix: Option<IpAddr>,
        held: Option<&Held>,
    ) -> Option<Answer> {
        let prefix = prefix?;
        let (counts, limits) = (self.held.get(&prefix), registry.limits());
        let (what, max) = match held? {
            Held::Contact(name)
                if registry.contact(name.as_str()).is_none()
                    && registry.num_contacts() < limits.max_contacts
                    && counts.map_or(0, |h| h.0) >= self.max_contacts =>
            {
                ("contacts registered", self.max_contacts)
            }
            Held::List(list)
                if registry.members(list.as_str()).is_none()
                    && registry.num_lists() < limits.max_lists
                    && counts.map_or(0, |h| h.1) >= self.max_lists =>
            {
                ("lists created", self.max_lists)
            }
            _ => return None,
        };
        Some(Answer::error(
            Status::SourceQuota,
            format!("this source already has {max} {what}, as many as one source may"),
        ))
    }

    /// Counts what a command that changed the registry took from `prefix` (`None`: trusted,
    /// not counted) or gave back.
    pub(crate) fn applied(&mut self, prefix: Option<IpAddr>, held: Held) {
        match (held, prefix) {
            (Held::Contact(name), Some(prefix)) => self.registered(prefix, &name),
            (Held::List(_), Some(prefix)) => self.created(prefix, 1),
            (Held::Exit(name), _) => self.unregistered(&name),
            _ => {}
        }
    }

    pub(crate) fn registered(&mut self, prefix: IpAddr, name: &str) {
        self.held.entry(prefix).or_default().0 += 1;
        self.contact_owner.insert(name.to_owned(), prefix);
    }

    /// Counts `n` lists created by `prefix`. The registry keeps each list's creator
    /// ([`Keys::creator`](contact_registry::Keys::creator)), so no owner table is needed
    /// here: the operator's `remove-list` reports it, and a restart counts it again.
    pub(crate) fn created(&mut self, prefix: IpAddr, n: usize) {
        self.held.entry(prefix).or_default().1 += n;
    }

    /// Gives back a list `prefix` created (the operator removed it).
    pub(crate) fn list_removed(&mut self, prefix: IpAddr) {
        self.release(prefix, |h| &mut h.1);
    }

    fn unregistered(&mut self, name: &str) {
        if let Some(p) = self.contact_owner.remove(name) {
            self.release(p, |h| &mut h.0);
        }
    }

    fn release(&mut self, prefix: IpAddr, which: impl Fn(&mut (usize, usize)) -> &mut usize) {
        if let Some(h) = self.held.get_mut(&prefix) {
            let n = which(h);
            *n = n.saturating_sub(1);
            if *h == (0, 0) {
                self.held.remove(&prefix);
            }
        }
    }

    /// Each contact's registering prefix, by name (sorted: a snapshot's order).
    pub(crate) fn contact_owners(&self) -> Vec<(&str, IpAddr)> {
        let mut v: Vec<_> = (self.contact_owner.iter())
            .map(|(n, p)| (n.as_str(), *p))
            .collect();
        v.sort_unstable();
        v
    }

    /// The lists each prefix created, by prefix (sorted), those with none left out.
    pub(crate) fn list_counts(&self) -> Vec<(IpAddr, usize)> {
        let mut v: Vec<_> = (self.held.iter())
            .filter(|(_, h)| h.1 > 0)
            .map(|(p, h)| (*p, h.1))
            .collect();
        v.sort_unstable();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_bound_to_the_address_and_the_key() {
        let k = CookieKey([7; 32]);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let c = k.cookie(a);
        assert!(k.verify(a, c));
        assert!(k.verify("::ffff:10.0.0.1".parse().unwrap(), c));
        assert!(!k.verify("10.0.0.2".parse().unwrap(), c));
        assert!(!CookieKey([8; 32]).verify(a, c));
        assert!(!k.verify(a, Cookie(c.0 ^ 1)));
    }

    #[test]
    fn cidrs_parse_and_contain() {
        let c: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(c.contains("2001:db8:1::5".parse().unwrap()));
        assert!(!c.contains("10.0.0.1".parse().unwrap()));
        assert_eq!(
            "127.0.0.1".parse::<Cidr>().unwrap().to_string(),
            "127.0.0.1/32"
        );
        assert_eq!(
            "10.9.8.7/8".parse::<Cidr>().unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("nope/8".parse::<Cidr>().is_err());
        assert!(
            "0.0.0.0/0"
                .parse::<Cidr>()
                .unwrap()
                .contains("1.2.3.4".parse().unwrap())
        );
    }

    /// `contains` on the integers agrees with masking the address as an `IpAddr`: every
    /// prefix length of both families, against sources that differ from the prefix in each
    /// single bit, in none, and in the other family or as IPv4-mapped IPv6.
    #[test]
    fn cidr_contains_is_masking() {
        let v4: Ipv4Addr = "203.0.113.77".parse().unwrap();
        let v6: Ipv6Addr = "2001:db8:85a3::8a2e:370:7334".parse().unwrap();
        let mut sources: Vec<IpAddr> = vec![IpAddr::V4(v4), IpAddr::V6(v6)];
        sources.extend((0..32).map(|b| IpAddr::V4(Ipv4Addr::from(u32::from(v4) ^ (1 << b)))));
        sources.extend(
            (0..32).map(|b| IpAddr::V6(Ipv4Addr::from(u32::from(v4) ^ (1 << b)).to_ipv6_mapped())),
        );
        sources.extend((0..128).map(|b| IpAddr::V6(Ipv6Addr::from(u128::from(v6) ^ (1 << b)))));
        let mut checked = 0;
        for (net, max) in [(IpAddr::V4(v4), 32), (IpAddr::V6(v6), 128)] {
            for len in 0..=max {
                let cidr = Cidr::new(net, len).unwrap();
                for &ip in &sources {
                    let canonical = ip.to_canonical();
                    let want = canonical.is_ipv4() == cidr.addr.is_ipv4()
                        && mask(canonical, cidr.len) == cidr.addr;
                    assert_eq!(cidr.contains(ip), want, "{cidr} {ip}");
                    checked += usize::from(want);
                }
            }
        }
        // Both answers occur, in numbers: not a test that only ever says no.
        assert!(checked > 1_000, "{checked}");
    }

    #[test]
    fn sources_group_by_prefix() {
        let s = Sources {
            v4_len: 32,
            v6_len: 64,
            trusted: vec![],
        };
        assert_eq!(
            s.prefix("2001:db8::1".parse().unwrap()),
            s.prefix("2001:db8::ffff:1".parse().unwrap())
        );
        assert_ne!(
            s.prefix("10.0.0.1".parse().unwrap()),
            s.prefix("10.0.0.2".parse().unwrap())
        );
    }

    #[test]
    fn answer_buckets_refill_and_the_server_wide_one_caps_many_sources() {
        let mut l = AnswerLimit::new(1000, 2000, 10_000, 5000);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        assert!(l.allow(0, a, 1500));
        assert!(!l.allow(0, a, 1000));
        assert!(l.allow(1000, a, 1000), "1,000 bytes a second");
        let mut sent = 0;
        for i in 0..100u32 {
            let ip = IpAddr::from(Ipv4Addr::from(0x0b00_0000 + i));
            if l.allow(1000, ip, 1000) {
                sent += 1000;
            }
        }
        assert!(sent <= 5000, "{sent}");
    }
}
