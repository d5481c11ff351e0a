//! JSON-RPC request ids.

use std::fmt;
use std::str::FromStr;

use serde::{Serialize, Serializer};
use serde_json::{Number, Value};

/// A JSON-RPC `id`: a string or a number (JSON-RPC 2.0 §4). `null` is not an `RpcId`; where
/// the protocol allows it (error responses) the caller holds an `Option<RpcId>`.
///
/// Two ids are the same only when they are the same JSON value: `1` and `"1"` differ, as they
/// do for the peers.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RpcId {
    /// An integer that fits `i64`: what every SDK sends.
    Num(i64),
    /// A string id (any content).
    Str(String),
    /// Any other JSON number (fraction, exponent, beyond `i64`), kept as its JSON text so it
    /// still pairs with the same text on the other side.
    Other(String),
}

impl RpcId {
    /// The id named by a JSON value, or `None` for anything that is not a string or a number
    /// (`null`, booleans, arrays, objects).
    pub fn from_value(value: &Value) -> Option<RpcId> {
        match value {
            Value::String(s) => Some(RpcId::Str(s.clone())),
            Value::Number(n) => Some(match n.as_i64() {
                Some(i) => RpcId::Num(i),
                None => RpcId::Other(n.to_string()),
            }),
            _ => None,
        }
    }

    /// The id as the JSON value it was on the wire.
    pub fn to_value(&self) -> Value {
        match self {
            RpcId::Num(i) => Value::from(*i),
            RpcId::Str(s) => Value::String(s.clone()),
            RpcId::Other(raw) => match Number::from_str(raw) {
                Ok(n) => Value::Number(n),
                Err(_) => Value::String(raw.clone()),
            },
        }
    }
}

impl fmt::Display for RpcId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RpcId::Num(i) => write!(f, "{i}"),
            RpcId::Str(s) | RpcId::Other(s) => f.write_str(s),
        }
    }
}

impl Serialize for RpcId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            RpcId::Num(i) => serializer.serialize_i64(*i),
            RpcId::Str(s) => serializer.serialize_str(s),
            RpcId::Other(_) => self.to_value().serialize(serializer),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn integer_and_string_ids_keep_their_json_type() {
        assert_eq!(RpcId::from_value(&json!(7)), Some(RpcId::Num(7)));
        assert_eq!(RpcId::from_value(&json!("7")), Some(RpcId::Str("7".into())));
        assert_eq!(serde_json::to_value(RpcId::Num(-3)).ok(), Some(json!(-3)));
        assert_eq!(
            serde_json::to_value(RpcId::Str("abc".into())).ok(),
            Some(json!("abc"))
        );
    }

    #[test]
    fn fractional_and_huge_ids_are_kept_as_their_text_and_serialise_as_numbers() {
        let frac = RpcId::from_value(&json!(1.5));
        assert_eq!(frac, Some(RpcId::Other("1.5".into())));
        let huge = RpcId::from_value(&json!(u64::MAX));
        assert_eq!(huge, Some(RpcId::Other(u64::MAX.to_string())));
        assert_eq!(
            huge.as_ref().map(|id| serde_json::to_value(id).ok()),
            Some(Some(json!(u64::MAX)))
        );
        assert_eq!(
            frac.map(|id| serde_json::to_value(id).ok()),
            Some(Some(json!(1.5)))
        );
    }

    #[test]
    fn null_bool_and_containers_are_not_ids() {
        for v in [json!(null), json!(true), json!([1]), json!({"a": 1})] {
            assert_eq!(RpcId::from_value(&v), None, "{v} must not be an id");
        }
    }

    #[test]
    fn display_is_plain() {
        assert_eq!(RpcId::Num(42).to_string(), "42");
        assert_eq!(RpcId::Str("req-1".into()).to_string(), "req-1");
        assert_eq!(RpcId::Other("1e3".into()).to_string(), "1e3");
    }
}
