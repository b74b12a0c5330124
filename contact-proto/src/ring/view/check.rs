//! Validation of a ring packet by the same JSON parser and rules as
//! [`RingPacket::decode`](crate::RingPacket::decode), with visitors that allocate nothing
//! for its members and unknown keys.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};

use super::{LIST, MemberRef, NUM, POINTER, TEXT};
use crate::json::check_count;
use crate::name::check_name;

/// What validation keeps of a packet.
pub(super) struct Checked<'a> {
    /// Every member's known keys: a forwarding member reads several of them (the
    /// initiator, its own entry, the next member, every address to refuse a list that
    /// names one twice), and parsing each again cost more than the rest of the hop.
    pub(super) members: Vec<MemberRef<'a>>,
    pub(super) pointer: usize,
    pub(super) text: Cow<'a, str>,
}

impl<'de> Deserialize<'de> for Checked<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Checked<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a ring packet object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Checked<'de>, A::Error> {
                let (mut num, mut count, mut text, mut pointer) = (None, None, None, None);
                while let Some(Str(key)) = map.next_key::<Str<'de>>()? {
                    match &*key {
                        NUM => once::<A, usize>(&mut map, &mut num, NUM)?,
                        LIST => once::<A, Members<'de>>(&mut map, &mut count, LIST)?,
                        TEXT => once::<A, Str<'de>>(&mut map, &mut text, TEXT)?,
                        POINTER => once::<A, usize>(&mut map, &mut pointer, POINTER)?,
                        _ => {
                            map.next_value::<AnyJson>()?;
                        }
                    }
                }
                use de::Error;
                let num = num.ok_or_else(|| A::Error::missing_field(NUM))?;
                let Members(members) = count.ok_or_else(|| A::Error::missing_field(LIST))?;
                check_count(NUM, num, members.len()).map_err(A::Error::custom)?;
                Ok(Checked {
                    members,
                    text: text.ok_or_else(|| A::Error::missing_field(TEXT))?.0,
                    pointer: pointer.ok_or_else(|| A::Error::missing_field(POINTER))?,
                })
            }
        }
        d.deserialize_map(V)
    }
}

fn once<'de, A: MapAccess<'de>, T: Deserialize<'de>>(
    map: &mut A,
    slot: &mut Option<T>,
    name: &'static str,
) -> Result<(), A::Error> {
    if slot.is_some() {
        return Err(de::Error::duplicate_field(name));
    }
    *slot = Some(map.next_value()?);
    Ok(())
}

/// A JSON string, borrowed when it needs no unescaping.
pub(super) struct Str<'a>(pub(super) Cow<'a, str>);

impl<'de> Deserialize<'de> for Str<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Borrowed(s)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Owned(s.to_owned())))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Owned(s)))
            }
        }
        d.deserialize_str(V)
    }
}

/// The members of a list, validated as [`Member`]s, their known keys kept.
struct Members<'a>(Vec<MemberRef<'a>>);

impl<'de> Deserialize<'de> for Members<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of members")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Members<'de>, A::Error> {
                let mut members = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(256));
                while let Some(MemberCheck(m)) = seq.next_element::<MemberCheck<'de>>()? {
                    members.push(m);
                }
                Ok(Members(members))
            }
        }
        d.deserialize_seq(V)
    }
}

/// The value of one unknown key of a member already validated, borrowed when it is a
/// string without escapes.
pub(super) struct MemberKey(pub(super) &'static str);

impl<'de> de::DeserializeSeed<'de> for MemberKey {
    type Value = Option<Cow<'de, str>>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        struct V(&'static str);
        impl<'de> Visitor<'de> for V {
            type Value = Option<Cow<'de, str>>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a member object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut found = None;
                while let Some(Str(key)) = map.next_key::<Str<'de>>()? {
                    if *key == *self.0 {
                        // A string, or no value of this kind: the caller reads strings.
                        found = map.next_value::<StrOrAny<'de>>()?.0;
                    } else {
                        map.next_value::<de::IgnoredAny>()?;
                    }
                }
                Ok(found)
            }
        }
        d.deserialize_map(V(self.0))
    }
}

/// A string, or any other JSON value (then `None`).
struct StrOrAny<'a>(Option<Cow<'a, str>>);

impl<'de> Deserialize<'de> for StrOrAny<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StrOrAny<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
                Ok(StrOrAny(Some(Cow::Borrowed(s))))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                Ok(StrOrAny(Some(Cow::Owned(s.to_owned()))))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(StrOrAny(None))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(StrOrAny(None))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(StrOrAny(None))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(StrOrAny(None))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(StrOrAny(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<de::IgnoredAny>()?.is_some() {}
                Ok(StrOrAny(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map
                    .next_entry::<de::IgnoredAny, de::IgnoredAny>()?
                    .is_some()
                {}
                Ok(StrOrAny(None))
            }
        }
        d.deserialize_any(V)
    }
}

/// A member validated as [`Member`]'s decoder does, its unknown keys skipped.
pub(super) struct MemberCheck<'a>(pub(super) MemberRef<'a>);

impl<'de> Deserialize<'de> for MemberCheck<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = MemberCheck<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a member object")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<MemberCheck<'de>, A::Error> {
                let (mut name, mut ip, mut port, mut ext) = (None, None, None, None);
                while let Some(Str(key)) = map.next_key::<Str<'de>>()? {
                    match &*key {
                        "name" => once::<A, Str<'de>>(&mut map, &mut name, "name")?,
                        "ip" => once::<A, Str<'de>>(&mut map, &mut ip, "ip")?,
                        "port" => once::<A, u16>(&mut map, &mut port, "port")?,
                        "ext" => once::<A, u32>(&mut map, &mut ext, "ext")?,
                        _ => {
                            map.next_value::<AnyJson>()?;
                        }
                    }
                }
                use de::Error;
                let Str(name) = name.ok_or_else(|| A::Error::missing_field("name"))?;
                check_name(&name).map_err(A::Error::custom)?;
                Ok(MemberCheck(MemberRef {
                    name,
                    ip: ip.ok_or_else(|| A::Error::missing_field("ip"))?.0,
                    port: port.ok_or_else(|| A::Error::missing_field("port"))?,
                    ext: ext.unwrap_or(0),
                }))
            }
        }
        d.deserialize_map(V)
    }
}

/// Any JSON value [`serde_json::Value`] accepts, skipped without allocating. Not
/// [`serde::de::IgnoredAny`]: serde_json skips that without checking numbers' range or
/// strings' escapes, where `Value` checks both.
struct AnyJson;

impl<'de> Deserialize<'de> for AnyJson {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(Self)
    }
}

impl<'de> Visitor<'de> for AnyJson {
    type Value = Self;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self, E> {
        Ok(Self)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self, E> {
        Ok(Self)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self, E> {
        Ok(Self)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self, E> {
        Ok(Self)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self, E> {
        Ok(Self)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self, E> {
        Ok(Self)
    }
    fn visit_none<E: de::Error>(self) -> Result<Self, E> {
        Ok(Self)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self, A::Error> {
        while seq.next_element::<Self>()?.is_some() {}
        Ok(Self)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self, A::Error> {
        while map.next_key::<Str<'de>>()?.is_some() {
            map.next_value::<Self>()?;
        }
        Ok(Self)
    }
}
