//! A YAML or JSON document as a tree of [`Node`]s that remember their line,
//! so shape errors ("`all.hosts` is a list, expected a mapping") name the key
//! and the line instead of serde's "expected mapping start".
//!
//! YAML nodes get their lines from serde-saphyr's spans; JSON nodes have none
//! and their callers find the line from the key path when an error needs it.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use serde_saphyr::Spanned;

/// One value of a document and the line it starts on (1-based, when known).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    pub line: Option<usize>,
    pub value: NodeValue,
}

/// What a node holds.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum NodeValue {
    /// `~`, `null` or nothing after a key.
    Null,
    /// A string, number or boolean.
    Scalar(Value),
    /// A YAML sequence or JSON array.
    List(Vec<Node>),
    /// A YAML mapping or JSON object, in document order.
    Map(Vec<(Key, Node)>),
}

/// A mapping key as written and its line.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Key {
    pub name: String,
    pub line: Option<usize>,
}

/// One step of a key path: a mapping key or a list index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    Key(String),
    Index(usize),
}

/// A key path from the document's top, shown as `all.children.web.hosts[2]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct KeyPath(pub Vec<Step>);

impl KeyPath {
    /// This path with one more key.
    pub fn key(&self, name: &str) -> Self {
        let mut steps = self.0.clone();
        steps.push(Step::Key(name.to_owned()));
        Self(steps)
    }

    /// This path with one more list index.
    pub fn index(&self, index: usize) -> Self {
        let mut steps = self.0.clone();
        steps.push(Step::Index(index));
        Self(steps)
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("the top level");
        }
        for (i, step) in self.0.iter().enumerate() {
            match step {
                Step::Index(n) => write!(f, "[{n}]")?,
                Step::Key(k) if !k.is_empty() && !k.contains(['.', '[', ']', '"', ' ']) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    f.write_str(k)?;
                }
                Step::Key(k) => write!(f, "[{k:?}]")?,
            }
        }
        Ok(())
    }
}

impl Node {
    /// A node without a known line, from a JSON value.
    pub fn from_json(value: Value) -> Self {
        let value = match value {
            Value::Null => NodeValue::Null,
            Value::Array(items) => NodeValue::List(items.into_iter().map(Self::from_json).collect()),
            Value::Object(map) => NodeValue::Map(
                map.into_iter().map(|(name, v)| (Key { name, line: None }, Self::from_json(v))).collect(),
            ),
            scalar => NodeValue::Scalar(scalar),
        };
        Self { line: None, value }
    }

    /// The node as a JSON value (variables keep their YAML types).
    pub fn into_json(self) -> Value {
        match self.value {
            NodeValue::Null => Value::Null,
            NodeValue::Scalar(v) => v,
            NodeValue::List(items) => Value::Array(items.into_iter().map(Self::into_json).collect()),
            NodeValue::Map(entries) => {
                Value::Object(entries.into_iter().map(|(k, v)| (k.name, v.into_json())).collect())
            }
        }
    }

    /// What the node is, for "is X, expected Y" messages: `a list`,
    /// `a number (3)`, `a string ("web")`.
    pub fn describe(&self) -> String {
        match &self.value {
            NodeValue::Null => "empty (null)".to_owned(),
            NodeValue::List(_) => "a list".to_owned(),
            NodeValue::Map(_) => "a mapping".to_owned(),
            NodeValue::Scalar(value) => describe_json(value),
        }
    }
}

/// What a JSON value is, for messages, with short scalars quoted.
pub(crate) fn describe_json(value: &Value) -> String {
    let short =
        |text: String| if text.chars().count() > 40 { text.chars().take(40).collect::<String>() + "…" } else { text };
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => format!("a boolean ({b})"),
        Value::Number(n) => format!("a number ({n})"),
        Value::String(s) => format!("a string ({:?})", short(s.clone())),
        Value::Array(_) => "a list".to_owned(),
        Value::Object(_) => "an object".to_owned(),
    }
}

/// The error for a key that is a list or a mapping.
pub(crate) const COMPLEX_KEY: &str =
    "a key is a list or a mapping; inventory keys are group, host or variable names: write the name itself";

fn line_of(location: serde_saphyr::Location) -> Option<usize> {
    usize::try_from(location.line()).ok().filter(|l| *l > 0)
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor).map(|value| Self { line: None, value })
    }
}

/// A node with the line serde-saphyr reports for it.
struct SpannedNode(Node);

impl<'de> Deserialize<'de> for SpannedNode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let spanned = Spanned::<Node>::deserialize(deserializer)?;
        Ok(Self(Node { line: line_of(spanned.referenced), ..spanned.value }))
    }
}

/// The top of a YAML document, with its line.
pub(crate) struct Document(pub Node);

impl<'de> Deserialize<'de> for Document {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        SpannedNode::deserialize(deserializer).map(|n| Self(n.0))
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = NodeValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<NodeValue, E> {
        Ok(NodeValue::Scalar(Value::Bool(v)))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<NodeValue, E> {
        Ok(NodeValue::Scalar(Value::from(v)))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<NodeValue, E> {
        Ok(NodeValue::Scalar(Value::from(v)))
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<NodeValue, E> {
        Ok(NodeValue::Scalar(i64::try_from(v).map_or_else(|_| Value::String(v.to_string()), Value::from)))
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<NodeValue, E> {
        Ok(NodeValue::Scalar(u64::try_from(v).map_or_else(|_| Value::String(v.to_string()), Value::from)))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<NodeValue, E> {
        // NaN and infinities have no JSON number; keep them as written.
        Ok(NodeValue::Scalar(
            serde_json::Number::from_f64(v).map_or_else(|| Value::String(v.to_string()), Value::Number),
        ))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<NodeValue, E> {
        Ok(NodeValue::Scalar(Value::String(v.to_owned())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<NodeValue, E> {
        Ok(NodeValue::Scalar(Value::String(v)))
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<NodeValue, E> {
        Ok(NodeValue::Scalar(Value::String(String::from_utf8_lossy(v).into_owned())))
    }

    fn visit_unit<E: de::Error>(self) -> Result<NodeValue, E> {
        Ok(NodeValue::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<NodeValue, E> {
        Ok(NodeValue::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<NodeValue, D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, deserializer: D) -> Result<NodeValue, D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<NodeValue, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(SpannedNode(node)) = seq.next_element()? {
            items.push(node);
        }
        Ok(NodeValue::List(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<NodeValue, A::Error> {
        let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(0).min(4096));
        while let Some(SpannedNode(key)) = map.next_key()? {
            let name = match key.value {
                NodeValue::Scalar(Value::String(s)) => s,
                NodeValue::Scalar(other) => other.to_string(),
                NodeValue::Null => String::new(),
                NodeValue::List(_) | NodeValue::Map(_) => {
                    return Err(de::Error::custom(COMPLEX_KEY));
                }
            };
            let SpannedNode(value) = map.next_value()?;
            entries.push((Key { name, line: key.line }, value));
        }
        Ok(NodeValue::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_paths_read_like_the_document() {
        let path = KeyPath::default().key("all").key("children").key("web").key("hosts").index(2);
        assert_eq!(path.to_string(), "all.children.web.hosts[2]");
        assert_eq!(KeyPath::default().key("_meta").key("hostvars").key("a b").to_string(), "_meta.hostvars[\"a b\"]");
        assert_eq!(KeyPath::default().to_string(), "the top level");
    }

    #[test]
    fn yaml_nodes_know_their_lines() {
        let text = "all:\n  hosts:\n    a:\n    b:\n      x: yes\n  vars: [1, 2]\n";
        let Document(node) = serde_saphyr::from_str(text).unwrap_or_else(|e| panic!("{e}"));
        let NodeValue::Map(top) = &node.value else { panic!("top is a mapping: {node:?}") };
        assert_eq!(top[0].0, Key { name: "all".into(), line: Some(1) });
        let NodeValue::Map(all) = &top[0].1.value else { panic!("all is a mapping") };
        let (hosts_key, hosts) = &all[0];
        assert_eq!(hosts_key.line, Some(2));
        let NodeValue::Map(hosts) = &hosts.value else { panic!("hosts is a mapping") };
        assert_eq!(hosts[1].0, Key { name: "b".into(), line: Some(4) });
        assert_eq!(hosts[1].1.clone().into_json(), serde_json::json!({"x": true}));
        assert_eq!(all[1].1.line, Some(6));
        assert_eq!(all[1].1.describe(), "a list");
    }
}
