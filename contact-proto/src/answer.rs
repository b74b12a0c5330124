//! Answers: what the server sends back for each request.
//!
//! ```text
//! answer     = [ id DELIM ] status DELIM body      ; id: only in answer to a tagged request
//! status     = 3DIGIT                              ; see Status
//! body       = "null" / lists-body / im-body / error-body     ; JSON
//! lists-body = {"num_lists": N, "list_names": [LIST, ...]}    ; + "ext": 1 from our server
//! im-body    = {"num_contacts_in_list": N, "contact_list": [MEMBER, ...]}
//! MEMBER     = {"name": NAME, "ip": IP, "port": PORT}         ; + "ext": 1 for our peers
//! error-body = {"error": TEXT}                     ; ours, only with codes 466 and above
//! ```
//!
//! JSON is written the way Python's `json.dumps` writes it (`", "`, `": "`, `\uXXXX` for
//! non-ASCII) and read whatever its spacing.

use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::auth::{PROOF_KEY, RING_KEY, SECRET_KEY, Secret, Tag};
use crate::json::{
    check_count, check_datagram, json_string_len, next_key, set_once, write_entry, write_json_str,
    write_py,
};
use crate::write::{digits, push_decimal};
use crate::{ContactName, Cookie, DELIMITER, DecodeError, ListName, RequestId, Status};

/// The extension level our server and peers announce with `"ext": 1` (see
/// `docs/protocol.md`, "Extensions"); `0` (the key absent) means a reference implementation.
pub const EXT_VERSION: u32 = 1;

/// An answer datagram.
///
/// ```
/// use contact_proto::{Answer, Body, Status};
/// let answer = Answer::decode(br#"200-_-{"num_lists": 2, "list_names": ["list_1", "list_2"]}"#).unwrap();
/// assert_eq!(answer.status, Status::Ok);
/// let Some(Body::Lists(lists)) = &answer.body else { panic!() };
/// assert_eq!(lists.list_names.len(), 2);
///
/// let mut wire = Vec::new();
/// answer.encode(&mut wire);
/// assert_eq!(wire, br#"200-_-{"num_lists": 2, "list_names": ["list_1", "list_2"]}"#);
/// assert_eq!(Answer::status(Status::ImOngoing).to_bytes(), b"463-_-null");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Answer {
    /// The id of the request this answers, if it was tagged (our extension).
    pub id: Option<RequestId>,
    /// An address cookie for the client to echo (ours: only in the answer to a tagged
    /// request that asked for one, `#ID~COOKIE-_-`).
    pub cookie: Option<Cookie>,
    /// Success or the failure.
    pub status: Status,
    /// The body, for `query-lists` and `im-start`, and for our detailed errors.
    pub body: Option<Body>,
}

/// The JSON body of an [`Answer`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Body {
    /// The answer to `query-lists`.
    Lists(ListsBody),
    /// The answer to `im-start`.
    ImStart(ImStartBody),
    /// Ours: a human explanation of a failure with a code of 466 or above.
    Error(String),
    /// Ours (issue 10): the secret of the contact a tagged `register` from a proven address
    /// just registered, `{"secret": "64 hex digits"}`. Only our peers get it: they alone
    /// send tagged requests.
    Secret(Secret),
}

/// The body of a `query-lists` answer: every list name, in creation order.
///
/// ```text
/// {"num_lists": N, "list_names": ["list_1", ...]}      ; + "ext": 1 from our server
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ListsBody {
    /// The names of every list, in creation order. `num_lists` on the wire is its length.
    pub list_names: Vec<ListName>,
    /// The extension level of the server; 0 for the reference.
    pub ext: u32,
}

/// The body of an `im-start` answer: the ring, initiator first, then the other members in
/// list order.
///
/// ```text
/// {"num_contacts_in_list": N, "contact_list": [{"name": "Me", "ip": "10.0.0.1", "port": 22000}, ...]}
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ImStartBody {
    /// The members; `num_contacts_in_list` on the wire is its length.
    pub contact_list: Vec<Member>,
    /// Ours (issue 10): the server's nonce for this ring ([`RING_KEY`], unique per
    /// `im-start`), which the members' proofs ([`Member::proof`]) cover. Only in answers to
    /// our peers' (tagged) `im-start`.
    pub ring: Option<u64>,
}

/// One member of a ring, as it appears in an `im-start` body and in a ring packet.
///
/// ```text
/// {"name": NAME, "ip": IP, "port": PORT}               ; + "ext": 1 for our peers
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Member {
    /// The contact's name.
    pub name: ContactName,
    /// Its IP address as registered. A string because a reference server stores whatever
    /// was typed; our server only stores IP addresses.
    pub ip: String,
    /// Its control port; instant messages go to `port + 1`.
    pub port: u16,
    /// The member's extension level ([`EXT_VERSION`] for our peers that registered with
    /// our server), 0 for a reference peer.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub ext: u32,
    /// Keys this implementation does not know, carried along unchanged.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl<'de> Deserialize<'de> for Member {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Member;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a member object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Member, A::Error> {
                const KEYS: [&str; 4] = ["name", "ip", "port", "ext"];
                let (mut name, mut ip, mut port, mut ext) = (None, None, None, None);
                let mut extra = Map::new();
                while let Some(key) = next_key(&mut map, &KEYS)? {
                    match key {
                        Ok(0) => set_once(&mut map, &mut name, "name")?,
                        Ok(1) => set_once(&mut map, &mut ip, "ip")?,
                        Ok(2) => set_once(&mut map, &mut port, "port")?,
                        Ok(_) => set_once(&mut map, &mut ext, "ext")?,
                        Err(other) => {
                            extra.insert(other, map.next_value()?);
                        }
                    }
                }
                use serde::de::Error;
                Ok(Member {
                    name: name.ok_or_else(|| A::Error::missing_field("name"))?,
                    ip: ip.ok_or_else(|| A::Error::missing_field("ip"))?,
                    port: port.ok_or_else(|| A::Error::missing_field("port"))?,
                    ext: ext.unwrap_or(0),
                    extra,
                })
            }
        }
        d.deserialize_map(Visitor)
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Member {
    /// A member with no extension keys.
    pub fn new(name: ContactName, ip: impl Into<String>, port: u16) -> Self {
        Self {
            name,
            ip: ip.into(),
            port,
            ext: 0,
            extra: Map::new(),
        }
    }

    /// The member's ring proof ([`PROOF_KEY`]), if the server gave one and it is 32 hex
    /// digits.
    pub fn proof(&self) -> Option<Tag> {
        match self.extra.get(PROOF_KEY)? {
            Value::String(hex) => Tag::from_hex(hex),
            _ => None,
        }
    }

    /// Sets (or, with `None`, removes) the member's ring proof.
    pub fn set_proof(&mut self, proof: Option<Tag>) {
        match proof {
            Some(tag) => {
                self.extra
                    .insert(PROOF_KEY.to_owned(), Value::String(tag.to_hex()));
            }
            None => {
                self.extra.remove(PROOF_KEY);
            }
        }
    }

    /// The same member with extension level `ext` ([`EXT_VERSION`] for our peers).
    pub fn with_ext(mut self, ext: u32) -> Self {
        self.ext = ext;
        self
    }

    /// The exact encoded length of a member without unknown keys, for a registry that must
    /// keep `im-start` answers within one datagram without encoding them.
    pub fn wire_len(name: &str, ip: &str, port: u16, ext: u32) -> usize {
        // {"name": N, "ip": I, "port": P}
        let base =
            9 + json_string_len(name) + 8 + json_string_len(ip) + 10 + digits(port.into()) + 1;
        if ext == 0 {
            base
        } else {
            base + 9 + digits(ext)
        }
    }
}

impl Serialize for ListsBody {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("num_lists", &self.list_names.len())?;
        map.serialize_entry("list_names", &self.list_names)?;
        if self.ext != 0 {
            map.serialize_entry("ext", &self.ext)?;
        }
        map.end()
    }
}

impl ListsBody {
    /// A body listing `list_names`, from a server of extension level `ext` (0 for the
    /// reference, [`EXT_VERSION`] for ours).
    pub fn new(list_names: Vec<ListName>, ext: u32) -> Self {
        Self { list_names, ext }
    }

    /// The encoded length of a body with no lists, to which [`ListsBody::name_wire_len`] of
    /// each list adds up to the exact length (the `ext` key is counted).
    pub fn empty_wire_len(ext: u32) -> usize {
        // {"num_lists": 0, "list_names": []}
        let base = 34;
        if ext == 0 {
            base
        } else {
            base + 9 + digits(ext)
        }
    }

    /// What one list name adds to the encoded body (its JSON string and its separator),
    /// minus one for the first name, which has no separator. `num_lists` growing a digit
    /// is not counted: callers bound it separately.
    pub fn name_wire_len(name: &str) -> usize {
        json_string_len(name) + 2
    }
}

impl ImStartBody {
    /// A body holding the ring `contact_list`, initiator first.
    pub fn new(contact_list: Vec<Member>) -> Self {
        Self {
            contact_list,
            ring: None,
        }
    }

    /// Appends the body as [`write_py`] would, written by hand: through serde, the
    /// members' `flatten`ed unknown keys made this the costliest part of a server's answer
    /// path (about 2,500 instructions an `im-start` of one member).
    fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"num_contacts_in_list\": ");
        push_decimal(out, self.contact_list.len() as u64);
        out.extend_from_slice(b", \"contact_list\": [");
        for (i, member) in self.contact_list.iter().enumerate() {
            if i > 0 {
                out.extend_from_slice(b", ");
            }
            member.write_json(out);
        }
        out.push(b']');
        if let Some(ring) = self.ring {
            write_entry(out, RING_KEY, |out| push_decimal(out, ring));
        }
        out.push(b'}');
    }
}

impl Member {
    /// Appends the member as its derived `Serialize` writes it through [`write_py`]: the
    /// known keys in declaration order, `ext` only when not 0, then the unknown keys in
    /// their order.
    fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"name\": ");
        write_json_str(out, self.name.as_str());
        out.extend_from_slice(b", \"ip\": ");
        write_json_str(out, &self.ip);
        out.extend_from_slice(b", \"port\": ");
        push_decimal(out, u64::from(self.port));
        if self.ext != 0 {
            out.extend_from_slice(b", \"ext\": ");
            push_decimal(out, u64::from(self.ext));
        }
        for (key, value) in &self.extra {
            write_entry(out, key, |out| write_py(out, value));
        }
        out.push(b'}');
    }
}

impl Serialize for ImStartBody {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("num_contacts_in_list", &self.contact_list.len())?;
        map.serialize_entry("contact_list", &self.contact_list)?;
        if let Some(ring) = self.ring {
            map.serialize_entry(RING_KEY, &ring)?;
        }
        map.end()
    }
}

impl Serialize for Body {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Lists(b) => b.serialize(s),
            Self::ImStart(b) => b.serialize(s),
            Self::Error(text) => {
                let mut map = s.serialize_map(Some(1))?;
                map.serialize_entry("error", text)?;
                map.end()
            }
            Self::Secret(secret) => {
                let mut map = s.serialize_map(Some(1))?;
                map.serialize_entry(SECRET_KEY, &secret.to_hex())?;
                map.end()
            }
        }
    }
}

#[derive(Deserialize)]
struct RawLists {
    num_lists: usize,
    list_names: Vec<ListName>,
    #[serde(default)]
    ext: u32,
}

#[derive(Deserialize)]
struct RawImStart {
    num_contacts_in_list: usize,
    contact_list: Vec<Member>,
    #[serde(default)]
    ring: Option<u64>,
}

impl<'de> Deserialize<'de> for ListsBody {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = RawLists::deserialize(d)?;
        check_count("num_lists", raw.num_lists, raw.list_names.len())
            .map_err(serde::de::Error::custom)?;
        Ok(Self {
            list_names: raw.list_names,
            ext: raw.ext,
        })
    }
}

impl<'de> Deserialize<'de> for ImStartBody {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = RawImStart::deserialize(d)?;
        check_count(
            "num_contacts_in_list",
            raw.num_contacts_in_list,
            raw.contact_list.len(),
        )
        .map_err(serde::de::Error::custom)?;
        Ok(Self {
            contact_list: raw.contact_list,
            ring: raw.ring,
        })
    }
}

impl<'de> Deserialize<'de> for Body {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::from_json(Value::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

impl Body {
    /// Decodes a body from its JSON by its shape: `contact_list` makes an `im-start` body,
    /// `list_names` a `query-lists` body, `error` an error body.
    fn from_json(value: Value) -> Result<Self, DecodeError> {
        let Value::Object(map) = &value else {
            return Err(DecodeError::UnknownBody);
        };
        if map.contains_key("contact_list") {
            Ok(Self::ImStart(serde_json::from_value(value)?))
        } else if map.contains_key("list_names") {
            Ok(Self::Lists(serde_json::from_value(value)?))
        } else if let Some(Value::String(text)) = map.get("error") {
            Ok(Self::Error(text.clone()))
        } else if let Some(Value::String(hex)) = map.get(SECRET_KEY).filter(|_| map.len() == 1) {
            Secret::from_hex(hex)
                .map(Self::Secret)
                .ok_or(DecodeError::UnknownBody)
        } else {
            Err(DecodeError::UnknownBody)
        }
    }
}

impl Answer {
    /// An answer with `status` and `body`, untagged.
    pub fn new(status: Status, body: Option<Body>) -> Self {
        Self {
            id: None,
            cookie: None,
            status,
            body,
        }
    }

    /// An answer with a status and no body (`CODE-_-null`).
    pub fn status(status: Status) -> Self {
        Self {
            id: None,
            cookie: None,
            status,
            body: None,
        }
    }

    /// A `200` answer without a body.
    pub fn ok() -> Self {
        Self::status(Status::Ok)
    }

    /// A `200` answer with a body.
    pub fn ok_with(body: Body) -> Self {
        Self {
            id: None,
            cookie: None,
            status: Status::Ok,
            body: Some(body),
        }
    }

    /// A failure with our explanation in an error body. Reference codes never carry one,
    /// since a reference peer expects `null` with them.
    pub fn error(status: Status, text: impl Into<String>) -> Self {
        let body = (!status.is_reference()).then(|| Body::Error(text.into()));
        Self {
            id: None,
            cookie: None,
            status,
            body,
        }
    }

    /// The same answer tagged with a request id.
    pub fn with_id(mut self, id: Option<RequestId>) -> Self {
        self.id = id;
        self
    }

    /// The same answer carrying `cookie` (written only when it has an id).
    pub fn with_cookie(mut self, cookie: Option<Cookie>) -> Self {
        self.cookie = cookie;
        self
    }

    /// Appends the wire form to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        self.encode_head(out);
        match &self.body {
            None => out.extend_from_slice(b"null"),
            Some(Body::ImStart(body)) => body.write_json(out),
            Some(body) => write_py(out, body),
        }
    }

    /// Appends the part of the wire form before the body: `[#ID-_-]CODE-_-`. A server that
    /// keeps a body already encoded (the `query-lists` body between two `create`s, say)
    /// appends it after this.
    pub fn encode_head(&self, out: &mut Vec<u8>) {
        if let Some(id) = self.id {
            out.push(b'#');
            push_decimal(out, u64::from(id));
            if let Some(c) = self.cookie {
                out.extend_from_slice(format!("~{:016x}", c.0).as_bytes());
            }
            out.extend_from_slice(DELIMITER.as_bytes());
        }
        push_decimal(out, u64::from(self.status.code()));
        out.extend_from_slice(DELIMITER.as_bytes());
    }

    /// The wire form as a new vector.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }

    /// Decodes an answer datagram. Total: every input gives an answer or an error.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        check_datagram(bytes)?;
        let text = std::str::from_utf8(bytes).map_err(|_| DecodeError::NotUtf8)?;
        let (id, cookie, rest) = match text.strip_prefix('#') {
            Some(rest) => {
                let (tag, rest) = rest
                    .split_once(DELIMITER)
                    .ok_or(DecodeError::BadAnswerHead)?;
                let bad = || DecodeError::BadId(tag.into());
                let (id, cookie) = crate::command::split_tag(tag).ok_or_else(bad)?;
                let cookie = match cookie {
                    None => None,
                    Some(hex) => Some(Cookie::parse(hex).ok_or_else(bad)?),
                };
                (Some(id), cookie, rest)
            }
            None => (None, None, text),
        };
        let (code, json) = rest
            .split_once(DELIMITER)
            .ok_or(DecodeError::BadAnswerHead)?;
        if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(DecodeError::BadAnswerHead);
        }
        let code: u16 = code.parse().map_err(|_| DecodeError::BadAnswerHead)?;
        let status = Status::try_from(code)?;
        // The shape is told by a key; going through `Value` first costs a second pass and
        // an allocation per node, so try the likely shape directly and fall back only when
        // that fails (a list named "contact_list", say).
        let direct = if json.contains("\"contact_list\"") {
            serde_json::from_str(json).ok().map(Body::ImStart)
        } else if json.contains("\"list_names\"") {
            serde_json::from_str(json).ok().map(Body::Lists)
        } else {
            None
        };
        let body = match direct {
            Some(body) => Some(body),
            None => match serde_json::from_str::<Value>(json)? {
                Value::Null => None,
                value => Some(Body::from_json(value)?),
            },
        };
        Ok(Self {
            id,
            cookie,
            status,
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MAX_DATAGRAM_LEN;

    fn member(name: &str, ip: &str, port: u16) -> Member {
        Member::new(name.parse().unwrap(), ip, port)
    }

    /// (answer, the exact bytes the reference's server sends for it)
    fn table() -> Vec<(Answer, &'static str)> {
        vec![
            (Answer::ok(), "200-_-null"),
            (Answer::status(Status::ImOngoing), "463-_-null"),
            (Answer::status(Status::NoImPending), "465-_-null"),
            (
                Answer::ok_with(Body::Lists(ListsBody {
                    list_names: vec!["list_1".parse().unwrap(), "list_2".parse().unwrap()],
                    ext: 0,
                })),
                r#"200-_-{"num_lists": 2, "list_names": ["list_1", "list_2"]}"#,
            ),
            (
                Answer::ok_with(Body::Lists(ListsBody::default())),
                r#"200-_-{"num_lists": 0, "list_names": []}"#,
            ),
            (
                Answer::ok_with(Body::ImStart(ImStartBody {
                    contact_list: vec![
                        member("Me", "10.120.70.106", 22000),
                        member("Myself", "10.120.70.106", 22002),
                    ],
                    ring: None,
                })),
                r#"200-_-{"num_contacts_in_list": 2, "contact_list": [{"name": "Me", "ip": "10.120.70.106", "port": 22000}, {"name": "Myself", "ip": "10.120.70.106", "port": 22002}]}"#,
            ),
        ]
    }

    #[test]
    fn secret_bodies_ring_nonces_and_proofs_round_trip() {
        let secret = Secret([0x5a; 32]);
        let answer = Answer::ok_with(Body::Secret(secret.clone())).with_id(Some(12));
        let wire = format!("#12-_-200-_-{{\"secret\": \"{}\"}}", "5a".repeat(32));
        assert_eq!(String::from_utf8(answer.to_bytes()).unwrap(), wire);
        assert_eq!(Answer::decode(wire.as_bytes()), Ok(answer));
        // Not 64 hex digits, or beside other keys: not a secret body.
        for bad in [
            r#"200-_-{"secret": "5a"}"#.to_string(),
            format!("200-_-{{\"secret\": \"{}\", \"x\": 1}}", "5a".repeat(32)),
        ] {
            assert!(Answer::decode(bad.as_bytes()).is_err(), "{bad}");
        }
        let mut m = member("Me", "10.0.0.1", 22000);
        m.ext = 1;
        m.set_proof(Some(Tag([0xcd; 16])));
        assert_eq!(m.proof(), Some(Tag([0xcd; 16])));
        let body = ImStartBody {
            contact_list: vec![m],
            ring: Some(7),
        };
        let answer = Answer::ok_with(Body::ImStart(body));
        let wire = answer.to_bytes();
        let text = String::from_utf8(wire.clone()).unwrap();
        assert!(
            text.ends_with(&format!(
                "\"ext\": 1, \"proof\": \"{}\"}}], \"ring\": 7}}",
                "cd".repeat(16)
            )),
            "{text}"
        );
        assert_eq!(Answer::decode(&wire), Ok(answer));
    }

    #[test]
    fn reference_bytes_both_ways() {
        for (answer, wire) in table() {
            assert_eq!(String::from_utf8(answer.to_bytes()).unwrap(), wire);
            assert_eq!(Answer::decode(wire.as_bytes()), Ok(answer));
        }
    }

    #[test]
    fn decodes_any_json_spacing() {
        let a = Answer::decode(br#"200-_-{"num_lists":1,"list_names":["x"]}"#).unwrap();
        assert!(matches!(a.body, Some(Body::Lists(ref b)) if b.list_names.len() == 1));
        let a = Answer::decode(b"200-_- null ").unwrap();
        assert_eq!(a.body, None);
    }

    #[test]
    fn cookies_in_tags() {
        let a = Answer::ok()
            .with_id(Some(5))
            .with_cookie(Some(Cookie(0xab)));
        assert_eq!(a.to_bytes(), b"#5~00000000000000ab-_-200-_-null");
        assert_eq!(Answer::decode(&a.to_bytes()).unwrap(), a);
        assert!(Answer::decode(b"#5~zz-_-200-_-null").is_err());
        let r = crate::Request::decode(b"#7~-_-query-lists").unwrap();
        assert_eq!(r.cookie, Some(crate::CookieTag::Ask));
        assert_eq!(r.to_bytes(), b"#7~-_-query-lists");
        let r = crate::Request::decode(b"#7~00000000000000ab-_-query-lists").unwrap();
        assert_eq!(r.cookie, Some(crate::CookieTag::Echo(Cookie(0xab))));
        assert_eq!(r.to_bytes(), b"#7~00000000000000ab-_-query-lists");
        assert_eq!(crate::Request::peek_id(b"#7~abc-_-x"), Some(7));
        assert!(crate::Request::decode(b"#7~abc-_-query-lists").is_err());
        assert!(crate::Request::decode(b"#~-_-query-lists").is_err());
    }

    #[test]
    fn our_extensions() {
        let a = Answer::ok_with(Body::Lists(ListsBody {
            list_names: vec![],
            ext: EXT_VERSION,
        }))
        .with_id(Some(5));
        let wire = a.to_bytes();
        assert_eq!(
            wire,
            br#"#5-_-200-_-{"num_lists": 0, "list_names": [], "ext": 1}"#
        );
        assert_eq!(Answer::decode(&wire), Ok(a));
        let e = Answer::error(Status::Malformed, "unknown command \"x\"");
        assert_eq!(e.to_bytes(), br#"466-_-{"error": "unknown command \"x\""}"#);
        assert_eq!(Answer::decode(&e.to_bytes()), Ok(e));
        // Reference codes never carry a body, so a reference peer sees what it expects.
        assert_eq!(
            Answer::error(Status::ImOngoing, "x").to_bytes(),
            b"463-_-null"
        );
        let mut m = member("I", "::1", 22001);
        m.ext = EXT_VERSION;
        let a = Answer::ok_with(Body::ImStart(ImStartBody {
            contact_list: vec![m],
            ring: None,
        }));
        assert_eq!(
            a.to_bytes(),
            br#"200-_-{"num_contacts_in_list": 1, "contact_list": [{"name": "I", "ip": "::1", "port": 22001, "ext": 1}]}"#
        );
    }

    #[test]
    fn bad_answers() {
        use DecodeError as E;
        assert_eq!(Answer::decode(b""), Err(E::Empty));
        assert_eq!(Answer::decode(b"200"), Err(E::BadAnswerHead));
        assert_eq!(Answer::decode(b"20-_-null"), Err(E::BadAnswerHead));
        assert_eq!(Answer::decode(b"+20-_-null"), Err(E::BadAnswerHead));
        assert_eq!(Answer::decode(b"299-_-null"), Err(E::UnknownStatus(299)));
        assert!(matches!(Answer::decode(b"200-_-{"), Err(E::Json(_))));
        assert_eq!(Answer::decode(b"200-_-{}"), Err(E::UnknownBody));
        assert_eq!(Answer::decode(b"200-_-[1]"), Err(E::UnknownBody));
        assert!(matches!(
            Answer::decode(br#"200-_-{"num_lists": 3, "list_names": ["a"]}"#),
            Err(E::Json(m)) if m.contains("num_lists is 3")
        ));
        assert!(matches!(
            Answer::decode(br#"200-_-{"num_lists": 1, "list_names": [""]}"#),
            Err(E::Json(_))
        ));
        let big = vec![b' '; MAX_DATAGRAM_LEN + 1];
        assert!(matches!(Answer::decode(&big), Err(E::TooLarge { .. })));
    }

    #[test]
    fn wire_lengths_are_exact() {
        for (name, ip, port, ext) in [
            ("Me", "10.0.0.1", 1u16, 0u32),
            ("名前 \"q\"", "::1", 65534, 1),
            ("x", "255.255.255.255", 22000, 0),
        ] {
            let mut m = member(name, ip, port);
            m.ext = ext;
            let mut out = Vec::new();
            write_py(&mut out, &m);
            assert_eq!(Member::wire_len(name, ip, port, ext), out.len(), "{name}");
        }
        for ext in [0, 1] {
            let body = Body::Lists(ListsBody {
                list_names: vec![],
                ext,
            });
            let mut out = Vec::new();
            write_py(&mut out, &body);
            assert_eq!(ListsBody::empty_wire_len(ext), out.len());
            let names = ["a", "list 1", "é"];
            let body = Body::Lists(ListsBody {
                list_names: names.iter().map(|n| n.parse().unwrap()).collect(),
                ext,
            });
            let mut full = Vec::new();
            write_py(&mut full, &body);
            let sum: usize = names.iter().map(|n| ListsBody::name_wire_len(n)).sum();
            // num_lists is "3" instead of "0": same width; no separator before the first name.
            assert_eq!(ListsBody::empty_wire_len(ext) + sum - 2, full.len());
        }
    }

    mod hand_written {
        use super::*;
        use proptest::prelude::*;

        fn text() -> impl Strategy<Value = String> {
            prop_oneof![
                "[a-z0-9_.:-]{1,12}",
                r#"[a -~"\\\u{0}-\u{1f}\u{7f}é名😀\u{a0}\u{2028}]{1,12}"#,
            ]
        }

        fn value() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                any::<i64>().prop_map(Value::from),
                any::<u64>().prop_map(Value::from),
                any::<f64>()
                    .prop_filter("finite", |f| f.is_finite())
                    .prop_map(Value::from),
                text().prop_map(Value::String),
            ];
            leaf.prop_recursive(2, 8, 3, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
                    prop::collection::vec((text(), inner), 0..3)
                        .prop_map(|kv| Value::Object(kv.into_iter().collect())),
                ]
            })
        }

        fn member() -> impl Strategy<Value = Member> {
            (
                text().prop_filter_map("a valid name", |s| ContactName::try_from(s).ok()),
                prop_oneof![text(), Just(String::new())],
                any::<u16>(),
                prop_oneof![Just(0u32), Just(1), any::<u32>()],
                prop::collection::vec((text(), value()), 0..3),
            )
                .prop_map(|(name, ip, port, ext, extra)| {
                    let mut m = Member::new(name, ip, port);
                    m.ext = ext;
                    m.extra = extra.into_iter().collect();
                    m
                })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(1024))]

            /// The hand-written body is byte for byte what serde writes through the
            /// Python formatter, whatever the names, addresses and unknown keys hold.
            #[test]
            fn im_start_bodies_are_written_as_serde_writes_them(
                members in prop::collection::vec(member(), 0..4),
                ring in prop::option::of(any::<u64>()),
            ) {
                let mut body = ImStartBody::new(members);
                body.ring = ring;
                let mut ours = Vec::new();
                body.write_json(&mut ours);
                let mut serde = Vec::new();
                write_py(&mut serde, &Body::ImStart(body));
                prop_assert_eq!(String::from_utf8_lossy(&ours), String::from_utf8_lossy(&serde));
            }
        }
    }
}
