//! Shared by the targets: turns fuzzer bytes into a tuple.

use deskbus_format::{PhpArray, Value};
use libfuzzer_sys::arbitrary::{Result, Unstructured};

/// A PHP value with arrays nested at most `depth` deep.
pub fn value(u: &mut Unstructured<'_>, depth: u32) -> Result<Value> {
    let max = if depth == 0 { 5 } else { 6 };
    Ok(match u.int_in_range(0..=max)? {
        0 => Value::Null,
        1 => Value::Bool(u.arbitrary()?),
        2 => Value::Int(u.arbitrary()?),
        3 => Value::Float(f64::from_bits(u.arbitrary()?)),
        4 | 5 => Value::String(u.arbitrary::<Vec<u8>>()?),
        _ => Value::Array(array(u, depth - 1)?),
    })
}

/// An array with int or string keys.
pub fn array(u: &mut Unstructured<'_>, depth: u32) -> Result<PhpArray> {
    let mut a = PhpArray::new();
    let n = u.int_in_range(0..=6)?;
    for _ in 0..n {
        let v = value(u, depth)?;
        if u.arbitrary()? {
            a.push(v);
        } else {
            let k: Vec<u8> = u.arbitrary()?;
            a.insert(deskbus_format::Key::Str(k), v);
        }
    }
    Ok(a)
}

/// A tuple (top-level array).
pub fn tuple(u: &mut Unstructured<'_>) -> Result<Value> {
    Ok(Value::Array(array(u, 3)?))
}
