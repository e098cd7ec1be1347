//! Reading a request whose few typed fields sit beside an `extra` map of
//! everything else, which is forwarded untouched.
//!
//! serde's `#[serde(flatten)]` does this by first copying every field it
//! does not know into an intermediate tree of its own and then converting
//! that tree into `extra`: for a chat request (whose `messages` are all
//! "extra") that was most of the cost of reading it. [`with_extra!`] reads
//! each field once, straight into its typed field or into `extra`, with
//! serde's own errors (missing, duplicate, invalid type).

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};

/// A field name, borrowed from the input when it can be (no allocation for
/// the fields the gateway reads).
pub(crate) struct Key<'de>(pub(crate) Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_borrowed_str<E: de::Error>(self, key: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(key)))
            }
            fn visit_str<E: de::Error>(self, key: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(key.to_owned())))
            }
            fn visit_string<E: de::Error>(self, key: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(key)))
            }
        }
        deserializer.deserialize_identifier(KeyVisitor)
    }
}

/// Reads the value of a typed field; a second one is an error, as serde's.
pub(crate) fn once<'de, A: MapAccess<'de>, T: Deserialize<'de>>(
    map: &mut A,
    field: &mut Option<T>,
    name: &'static str,
) -> Result<(), A::Error> {
    if field.is_some() {
        return Err(de::Error::duplicate_field(name));
    }
    *field = Some(map.next_value()?);
    Ok(())
}

/// `impl Deserialize` for a struct with one required field, optional
/// fields (`Option<_>`, missing or null: `None`) and `extra`, the rest:
///
/// ```ignore
/// with_extra!(MessagesRequest { model; max_tokens, stream });
/// ```
macro_rules! with_extra {
    ($name:ident { $required:ident; $($optional:ident),* $(,)? }) => {
        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct FieldsVisitor;
                impl<'de> serde::de::Visitor<'de> for FieldsVisitor {
                    type Value = $name;
                    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                        f.write_str(concat!("an object (", stringify!($name), ")"))
                    }
                    fn visit_map<A: serde::de::MapAccess<'de>>(
                        self,
                        mut map: A,
                    ) -> Result<$name, A::Error> {
                        let mut $required = None;
                        // `Some(None)` once read as null.
                        $(let mut $optional = None;)*
                        let mut extra = serde_json::Map::new();
                        while let Some(key) = map.next_key::<$crate::extra::Key>()? {
                            match &*key.0 {
                                stringify!($required) => $crate::extra::once(
                                    &mut map, &mut $required, stringify!($required),
                                )?,
                                $(stringify!($optional) => $crate::extra::once(
                                    &mut map, &mut $optional, stringify!($optional),
                                )?,)*
                                _ => {
                                    let value: serde_json::Value = map.next_value()?;
                                    extra.insert(key.0.into_owned(), value);
                                }
                            }
                        }
                        Ok($name {
                            $required: $required.ok_or_else(|| {
                                <A::Error as serde::de::Error>::missing_field(stringify!($required))
                            })?,
                            $($optional: $optional.unwrap_or_default(),)*
                            extra,
                        })
                    }
                }
                deserializer.deserialize_map(FieldsVisitor)
            }
        }
    };
}

pub(crate) use with_extra;
