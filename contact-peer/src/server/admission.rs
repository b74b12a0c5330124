//! Admission, one part for [`ServerCore`](super::ServerCore) and the replicated server's
//! [`Front`](super::replicated::Front): what the address cookie of a request proves, and
//! whether an answer may go to its destination (issue 10).
//!
//! Both servers decide the same way: a tagged request whose cookie is valid for its source
//! address is proven, and its answers are not limited; one that asks for a cookie, or brings
//! one that is not its address's, is given one in its answer's tag; every other answer counts
//! against the volume its destination's prefix and the whole server may get, unless the
//! operator trusts that prefix (`--trust`).

use std::net::IpAddr;

use contact_proto::{Cookie, CookieTag, DELIMITER, Request};

use super::ServerConfig;
use super::abuse::{AnswerLimit, CookieKey, Sources};

/// What the address cookie of one request proved, and what its answer must carry.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Turn {
    /// The cookie is valid for the source address: its answers are not limited.
    pub(crate) proven: bool,
    /// The cookie to give in the answer's tag.
    pub(crate) give: Option<Cookie>,
}

/// The cookie key, the source prefixes and the answer volume limit of one server (or of one
/// node of a cluster).
#[derive(Debug)]
pub(crate) struct Admission {
    pub(crate) sources: Sources,
    limit: AnswerLimit,
    key: CookieKey,
}

impl Admission {
    pub(crate) fn new(config: &ServerConfig) -> Self {
        Self {
            sources: Sources::new(config),
            limit: AnswerLimit::new(
                config.answer_rate,
                config.answer_burst,
                config.answer_total_rate,
                config.answer_total_burst,
            ),
            key: config.cookie_key.clone(),
        }
    }

    /// What `request`, received from `ip`, proved. Only tagged requests (our peers') take
    /// part: a reference peer's request is never proven and never given a cookie.
    pub(crate) fn turn(&self, ip: IpAddr, request: &Request) -> Turn {
        if request.id.is_none() {
            return Turn::default();
        }
        match request.cookie {
            Some(CookieTag::Echo(c)) if self.key.verify(ip, c) => Turn {
                proven: true,
                give: None,
            },
            Some(_) => Turn {
                proven: false,
                give: Some(self.key.cookie(ip)),
            },
            None => Turn::default(),
        }
    }

    /// Whether an answer of `len` bytes may go to `ip`, answering a request that proved
    /// `turn`, at `now_ms`; counts it either way.
    pub(crate) fn allow(&mut self, now_ms: u64, ip: IpAddr, turn: Turn, len: usize) -> bool {
        if turn.proven {
            self.limit.count_proven();
            return true;
        }
        self.sources.trusted(ip) || self.limit.allow(now_ms, self.sources.prefix(ip), len)
    }

    /// The prefix `ip` is counted by for the per-source limits, or `None` when the operator
    /// trusts it.
    pub(crate) fn limited_prefix(&self, ip: IpAddr) -> Option<IpAddr> {
        self.sources.limited(ip)
    }

    /// Answers sent to proven addresses so far.
    pub(crate) fn proven(&self) -> u64 {
        self.limit.proven()
    }

    /// Answers not sent (over the volume limit), and their bytes.
    pub(crate) fn dropped(&self) -> (u64, u64) {
        self.limit.dropped()
    }
}

/// `answer`, an encoded tagged answer without a cookie part (`#ID-_-...`), with `cookie` put
/// in its tag (`#ID~COOKIE-_-...`). An answer that is untagged or already carries a cookie
/// part is left as it is.
pub(crate) fn with_cookie(mut answer: Vec<u8>, cookie: Cookie) -> Vec<u8> {
    let delimiter = DELIMITER.as_bytes();
    let Some(tag_end) = answer.windows(delimiter.len()).position(|w| w == delimiter) else {
        return answer;
    };
    if !answer.starts_with(b"#") || answer[..tag_end].contains(&b'~') {
        return answer;
    }
    let part = format!("~{:016x}", cookie.0);
    answer.splice(tag_end..tag_end, part.into_bytes());
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ServerConfig {
        ServerConfig::default()
            .cookie_key(CookieKey([3; 32]))
            .answer_rate(1000)
            .answer_burst(1000)
            .trust(vec!["10.9.0.0/16".parse().unwrap()])
    }

    #[test]
    fn a_valid_cookie_proves_a_wrong_or_missing_one_gets_one() {
        let a = Admission::new(&config());
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let ask = Request::decode(b"#1~-_-query-lists").unwrap();
        let given = a.turn(ip, &ask).give.expect("a cookie for who asks");
        let echo = format!("#2~{:016x}-_-query-lists", given.0);
        let echo = Request::decode(echo.as_bytes()).unwrap();
        assert_eq!(
            a.turn(ip, &echo),
            Turn {
                proven: true,
                give: None
            }
        );
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        let t = a.turn(other, &echo);
        assert!(!t.proven && t.give.is_some() && t.give != Some(given));
        for plain in [&b"#3-_-query-lists"[..], b"query-lists"] {
            assert_eq!(
                a.turn(ip, &Request::decode(plain).unwrap()),
                Turn::default()
            );
        }
    }

    #[test]
    fn only_unproven_untrusted_answers_are_limited() {
        let mut a = Admission::new(&config());
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        assert!(a.allow(0, ip, Turn::default(), 900));
        assert!(!a.allow(0, ip, Turn::default(), 900));
        let proven = Turn {
            proven: true,
            give: None,
        };
        assert!(a.allow(0, ip, proven, 60_000));
        assert!(a.allow(0, "10.9.3.4".parse().unwrap(), Turn::default(), 60_000));
        assert_eq!((a.proven(), a.dropped()), (1, (1, 900)));
    }

    #[test]
    fn the_cookie_goes_in_the_answers_tag() {
        let c = Cookie(0x8c1f_0e9a_2b3d_4c5e);
        assert_eq!(
            with_cookie(b"#17-_-200-_-null".to_vec(), c),
            b"#17~8c1f0e9a2b3d4c5e-_-200-_-null"
        );
        for same in [
            &b"200-_-null"[..],
            b"#17~0000000000000001-_-200-_-null",
            b"#17",
        ] {
            assert_eq!(with_cookie(same.to_vec(), c), same);
        }
    }
}
