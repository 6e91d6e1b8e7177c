//! The value model: what a tuple can hold.
//!
//! It mirrors PHP's data model rather than JSON's because the bytes we must
//! reproduce come from PHP: strings are byte strings (they may be invalid
//! UTF-8), floats may be INF/NAN/-0.0, and an array is an ordered map whose
//! keys are integers or strings. Whether an array prints as a JSON list is
//! decided by its keys (exactly `0..n` in order), as PHP does.

/// A PHP value.
#[derive(Clone, Debug, PartialEq, Default)]
pub enum Value {
    /// PHP `null`.
    #[default]
    Null,
    /// PHP `bool`.
    Bool(bool),
    /// PHP `int` (64-bit).
    Int(i64),
    /// PHP `float`, including INF, NAN and -0.0.
    Float(f64),
    /// PHP string: bytes, not necessarily UTF-8.
    String(Vec<u8>),
    /// PHP array: an ordered map.
    Array(PhpArray),
}

/// An array key: PHP only has integer and string keys.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Key {
    /// Integer key.
    Int(i64),
    /// String key (bytes).
    Str(Vec<u8>),
}

impl From<i64> for Key {
    fn from(i: i64) -> Self {
        Key::Int(i)
    }
}

impl From<&str> for Key {
    fn from(s: &str) -> Self {
        Key::Str(s.as_bytes().to_vec())
    }
}

impl From<String> for Key {
    fn from(s: String) -> Self {
        Key::Str(s.into_bytes())
    }
}

/// An ordered map with PHP array semantics (insertion order is kept).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct PhpArray {
    entries: Vec<(Key, Value)>,
    // PHP appends with max(int key) + 1; tracked so `push` stays O(1).
    next_index: i64,
}

impl PhpArray {
    /// An empty array.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty array with room for `n` entries.
    pub fn with_capacity(n: usize) -> Self {
        Self {
            entries: Vec::with_capacity(n),
            next_index: 0,
        }
    }

    /// Appends `value` under the next integer key, like `$a[] = $value`.
    pub fn push(&mut self, value: impl Into<Value>) {
        let key = self.next_index;
        self.next_index = key.saturating_add(1);
        self.entries.push((Key::Int(key), value.into()));
    }

    /// Sets `key` to `value`: replaces in place when the key exists (order
    /// kept), appends otherwise, like `$a[$key] = $value`.
    pub fn insert(&mut self, key: impl Into<Key>, value: impl Into<Value>) {
        let key = key.into();
        let value = value.into();
        if let Key::Int(i) = key
            && i >= self.next_index
        {
            self.next_index = i.saturating_add(1);
        }
        match self.entries.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.entries.push((key, value)),
        }
    }

    /// The value under `key`.
    pub fn get(&self, key: &Key) -> Option<&Value> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the array is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries in insertion order.
    pub fn entries(&self) -> &[(Key, Value)] {
        &self.entries
    }

    /// Iterates over the entries in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = &(Key, Value)> {
        self.entries.iter()
    }

    /// PHP's `array_is_list`: keys are exactly `0..n` in order. Such an array
    /// prints as a JSON list (unless `force_object`).
    pub fn is_list(&self) -> bool {
        self.entries
            .iter()
            .enumerate()
            .all(|(i, (k, _))| matches!(k, Key::Int(j) if usize::try_from(*j) == Ok(i)))
    }
}

impl<K: Into<Key>, V: Into<Value>> FromIterator<(K, V)> for PhpArray {
    fn from_iter<T: IntoIterator<Item = (K, V)>>(iter: T) -> Self {
        let mut a = PhpArray::new();
        for (k, v) in iter {
            a.insert(k, v);
        }
        a
    }
}

impl<K: Into<Key>, V: Into<Value>> FromIterator<(K, V)> for Value {
    fn from_iter<T: IntoIterator<Item = (K, V)>>(iter: T) -> Self {
        Value::Array(iter.into_iter().collect())
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}
impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Value::Int(i)
    }
}
impl From<i32> for Value {
    fn from(i: i32) -> Self {
        Value::Int(i64::from(i))
    }
}
impl From<f64> for Value {
    fn from(f: f64) -> Self {
        Value::Float(f)
    }
}
impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::String(s.as_bytes().to_vec())
    }
}
impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::String(s.into_bytes())
    }
}
impl From<Vec<u8>> for Value {
    fn from(b: Vec<u8>) -> Self {
        Value::String(b)
    }
}
impl From<&[u8]> for Value {
    fn from(b: &[u8]) -> Self {
        Value::String(b.to_vec())
    }
}
impl From<PhpArray> for Value {
    fn from(a: PhpArray) -> Self {
        Value::Array(a)
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(o: Option<T>) -> Self {
        o.map_or(Value::Null, Into::into)
    }
}

/// Converts JSON data (for instance an event decoded by the app) into a
/// tuple.
///
/// Objects keep their key order (the workspace enables serde_json's
/// `preserve_order`) and their keys stay strings: unlike PHP's
/// `json_decode`, `{"0":"a"}` is not turned into a list. Integers that fit
/// `i64` stay integers; larger ones become floats, as PHP does.
impl From<&serde_json::Value> for Value {
    fn from(v: &serde_json::Value) -> Self {
        match v {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Bool(*b),
            serde_json::Value::Number(n) => number(n),
            serde_json::Value::String(s) => Value::String(s.as_bytes().to_vec()),
            serde_json::Value::Array(a) => {
                let mut out = PhpArray::with_capacity(a.len());
                for item in a {
                    out.push(Value::from(item));
                }
                Value::Array(out)
            }
            serde_json::Value::Object(o) => {
                // Keys of a JSON object are unique, so plain appends are
                // correct and avoid `insert`'s linear search.
                let mut out = PhpArray::with_capacity(o.len());
                for (k, item) in o {
                    out.entries
                        .push((Key::Str(k.as_bytes().to_vec()), Value::from(item)));
                }
                Value::Array(out)
            }
        }
    }
}

impl From<serde_json::Value> for Value {
    fn from(v: serde_json::Value) -> Self {
        match v {
            serde_json::Value::String(s) => Value::String(s.into_bytes()),
            serde_json::Value::Array(a) => {
                let mut out = PhpArray::with_capacity(a.len());
                for item in a {
                    out.push(Value::from(item));
                }
                Value::Array(out)
            }
            serde_json::Value::Object(o) => {
                let mut out = PhpArray::with_capacity(o.len());
                for (k, item) in o {
                    out.entries
                        .push((Key::Str(k.into_bytes()), Value::from(item)));
                }
                Value::Array(out)
            }
            other => Value::from(&other),
        }
    }
}

fn number(n: &serde_json::Number) -> Value {
    if let Some(i) = n.as_i64() {
        Value::Int(i)
    } else if let Some(f) = n.as_f64() {
        // u64 above i64::MAX lands here too: PHP turns such integers into
        // floats when decoding JSON.
        Value::Float(f)
    } else {
        Value::Null
    }
}

/// A borrowed view of what a serializer writes.
///
/// Records wrap the tuple together with a few fields of their own (the
/// Kinesis `Data`, `StreamName`, `PartitionKey`...). Building a [`Value`] for
/// that would copy the payload for every record; this view lets the record
/// borrow everything instead.
#[derive(Clone, Copy, Debug)]
pub enum ValueRef<'a> {
    /// A value of the model.
    Value(&'a Value),
    /// A byte string.
    Bytes(&'a [u8]),
    /// An array with string keys, in order.
    Fields(&'a [(&'a str, ValueRef<'a>)]),
}

impl<'a> From<&'a Value> for ValueRef<'a> {
    fn from(v: &'a Value) -> Self {
        ValueRef::Value(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_detection_follows_php() {
        let mut a = PhpArray::new();
        a.push("a");
        a.push("b");
        assert!(a.is_list());
        let sparse: PhpArray = [(1i64, "a"), (2, "b")].into_iter().collect();
        assert!(!sparse.is_list());
        let named: PhpArray = [("x", 1i64)].into_iter().collect();
        assert!(!named.is_list());
        assert!(PhpArray::new().is_list());
    }

    #[test]
    fn push_continues_after_the_largest_int_key() {
        let mut a = PhpArray::new();
        a.insert(5i64, "x");
        a.push("y");
        assert_eq!(a.entries()[1].0, Key::Int(6));
    }

    #[test]
    fn insert_replaces_in_place() {
        let mut a: PhpArray = [("a", 1i64), ("b", 2)].into_iter().collect();
        a.insert("a", 3i64);
        assert_eq!(a.len(), 2);
        assert_eq!(a.entries()[0], (Key::from("a"), Value::Int(3)));
    }

    #[test]
    fn from_serde_json_keeps_order_and_number_kinds() {
        let j: serde_json::Value =
            serde_json::from_str(r#"{"z":1,"a":18446744073709551615,"m":[1.5,null,"x"]}"#)
                .expect("valid json");
        let Value::Array(a) = Value::from(&j) else {
            panic!("expected an array");
        };
        let keys: Vec<_> = a.iter().map(|(k, _)| k.clone()).collect();
        assert_eq!(keys, vec![Key::from("z"), Key::from("a"), Key::from("m")]);
        assert_eq!(a.entries()[0].1, Value::Int(1));
        assert_eq!(a.entries()[1].1, Value::Float(18446744073709551615.0));
        let Value::Array(m) = &a.entries()[2].1 else {
            panic!("expected a list");
        };
        assert!(m.is_list());
        assert_eq!(Value::from(j.clone()), Value::from(&j));
    }
}
