//! The acknowledgement of one hop of a ring packet, sent only between our peers.

use serde_json::Value;

use crate::DecodeError;
use crate::json::next_key;
use crate::write::push_decimal;

/// The acknowledgement of one hop, sent only between our peers, to the source of the packet
/// it acknowledges.
///
/// ```text
/// ring-ack = {"ack": IM_ID, "pointer": P}     ; exactly these two keys, both integers
/// IM_ID    = 0..18446744073709551615          ; the packet's "im_id"
/// P        = the packet's "pointer", as it arrived
/// ```
///
/// Read like any JSON (any spacing, either key order); written as Python's `json.dumps`
/// writes it.
///
/// ```
/// use contact_proto::RingAck;
/// let ack = RingAck { im_id: 7, pointer: 3 };
/// assert_eq!(ack.to_bytes(), br#"{"ack": 7, "pointer": 3}"#);
/// assert_eq!(RingAck::decode(br#"{"pointer":3,"ack":7}"#), Ok(ack));
/// assert!(RingAck::decode(br#"{"ack": 7, "pointer": 3, "x": 1}"#).is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RingAck {
    /// The message's `"im_id"`.
    pub im_id: u64,
    /// The pointer of the acknowledged packet, as it arrived.
    pub pointer: usize,
}

impl RingAck {
    /// The largest ack decoded: anything longer is not one. The longest ack written,
    /// `{"ack": 18446744073709551615, "pointer": 18446744073709551615}`, is 62 bytes.
    pub const MAX_LEN: usize = 64;

    /// The wire form as a new vector.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32);
        self.encode(&mut out);
        out
    }

    /// Appends the wire form to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(br#"{"ack": "#);
        push_decimal(out, self.im_id);
        out.extend_from_slice(br#", "pointer": "#);
        push_decimal(out, self.pointer as u64);
        out.push(b'}');
    }

    /// Decodes an ack: a JSON object of at most [`RingAck::MAX_LEN`] bytes with exactly the
    /// keys `ack` and `pointer`, both non-negative integers (a repeated key counts once, its
    /// last value kept, as for every other JSON object of the protocol). Total: every input
    /// gives an ack or an error.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() > Self::MAX_LEN {
            return Err(DecodeError::TooLarge {
                len: bytes.len(),
                max: Self::MAX_LEN,
            });
        }
        if bytes.is_empty() {
            return Err(DecodeError::Empty);
        }
        let shape = || DecodeError::Json("an ack is {\"ack\": N, \"pointer\": N}".into());
        // Read as a `Value` object would be (any JSON first; then exactly the two keys, the
        // last of a repeated key's values), without building one: every hop of a ring
        // decodes an ack.
        let Ok(fields) = serde_json::from_slice::<AckFields>(bytes) else {
            // Not JSON, or JSON of another shape: which one, as serde_json says it.
            return Err(
                match serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
                    Err(e) => e.into(),
                    Ok(_) => shape(),
                },
            );
        };
        let (Some(im_id), Some(pointer), false) = (fields.ack, fields.pointer, fields.other) else {
            return Err(shape());
        };
        let im_id = im_id.as_u64().ok_or_else(shape)?;
        let pointer = (pointer.as_u64())
            .and_then(|p| usize::try_from(p).ok())
            .ok_or_else(shape)?;
        Ok(Self { im_id, pointer })
    }
}

/// What an ack's JSON object holds: the last value of each of its two keys, and whether it
/// has another key.
struct AckFields {
    ack: Option<Value>,
    pointer: Option<Value>,
    other: bool,
}

impl<'de> serde::Deserialize<'de> for AckFields {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = AckFields;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<AckFields, A::Error> {
                let mut fields = AckFields {
                    ack: None,
                    pointer: None,
                    other: false,
                };
                // A known key is read without allocating (an unknown one is refused later).
                while let Some(key) = next_key(&mut map, &["ack", "pointer"])? {
                    match key {
                        // A number is a `Value` without an allocation; anything else is
                        // read whole, as it would be into a `Value`, and refused later.
                        Ok(0) => fields.ack = Some(map.next_value()?),
                        Ok(_) => fields.pointer = Some(map.next_value()?),
                        Err(_) => {
                            map.next_value::<serde::de::IgnoredAny>()?;
                            fields.other = true;
                        }
                    }
                }
                Ok(fields)
            }
        }
        d.deserialize_map(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (ack, exact bytes): what our peers send.
    const TABLE: &[(RingAck, &str)] = &[
        (
            RingAck {
                im_id: 0,
                pointer: 0,
            },
            r#"{"ack": 0, "pointer": 0}"#,
        ),
        (
            RingAck {
                im_id: 1082269761,
                pointer: 2,
            },
            r#"{"ack": 1082269761, "pointer": 2}"#,
        ),
        (
            RingAck {
                im_id: u64::MAX,
                pointer: 21,
            },
            r#"{"ack": 18446744073709551615, "pointer": 21}"#,
        ),
    ];

    #[test]
    fn table_both_ways() {
        for (ack, wire) in TABLE {
            assert_eq!(ack.to_bytes(), wire.as_bytes(), "{ack:?}");
            assert_eq!(RingAck::decode(wire.as_bytes()), Ok(*ack), "{wire}");
        }
    }

    #[test]
    fn longest_ack_fits() {
        let longest = RingAck {
            im_id: u64::MAX,
            pointer: u64::MAX as usize,
        };
        let wire = longest.to_bytes();
        assert!(wire.len() <= RingAck::MAX_LEN);
        assert_eq!(RingAck::decode(&wire), Ok(longest));
    }

    #[test]
    fn other_spellings() {
        for wire in [
            &br#"{"pointer":3,"ack":7}"#[..],
            b" {\"ack\" : 7 ,\n \"pointer\": 3 } ",
            br#"{"ack": 5, "pointer": 3, "ack": 7}"#,
        ] {
            assert_eq!(
                RingAck::decode(wire),
                Ok(RingAck {
                    im_id: 7,
                    pointer: 3
                })
            );
        }
    }

    #[test]
    fn acks_are_strict() {
        for bad in [
            &br#"{"ack": 1}"#[..],
            br#"{"ack": -1, "pointer": 2}"#,
            br#"{"ack": 1, "pointer": "2"}"#,
            br#"{"ack": 1, "pointer": 2.0}"#,
            br#"{"ack": 1, "pointer": 2, "x": 0}"#,
            br#"{"ack": 1, "pointer": 2} x"#,
            br#"{"ack": 18446744073709551616, "pointer": 2}"#,
            br#"[1, 2]"#,
            b"null",
            b"\xff",
            b"",
            &[b' '; 65][..],
        ] {
            assert!(
                RingAck::decode(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
