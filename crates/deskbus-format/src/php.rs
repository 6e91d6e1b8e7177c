//! The few PHP engine behaviours the plugin's output depends on:
//! numeric-string detection (`JSON_NUMERIC_CHECK`), float printing
//! (`serialize_precision = -1` for JSON, `precision = 14` for strings) and the
//! UTF-8 decoder `json_encode` uses to decide what is malformed.
//!
//! Each function follows the PHP 8.2 C source rule by rule; the golden vectors
//! in `shared/reference/golden` check them.

use std::fmt::Write as _;

/// A number recognised in a numeric string.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Numeric {
    Int(i64),
    Float(f64),
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

/// PHP 8's `is_numeric_string` (no errors allowed): optional leading and
/// trailing whitespace, optional sign, decimal digits with an optional
/// fraction and exponent. Integers with more digits than `i64` holds become
/// floats. Returns `None` for anything else, including hex, `1_000` and
/// non-ASCII digits.
pub(crate) fn numeric_string(s: &[u8]) -> Option<Numeric> {
    let mut i = 0;
    while i < s.len() && is_ws(s[i]) {
        i += 1;
    }
    let start = i;
    if i < s.len() && (s[i] == b'-' || s[i] == b'+') {
        i += 1;
    }
    let digit = |j: usize| j < s.len() && s[j].is_ascii_digit();
    let mut is_float = false;
    let int_start = i;
    if digit(i) {
        while digit(i) {
            i += 1;
        }
        if i < s.len() && s[i] == b'.' {
            is_float = true;
            i += 1;
            while digit(i) {
                i += 1;
            }
        }
    } else if i < s.len() && s[i] == b'.' && digit(i + 1) {
        is_float = true;
        i += 1;
        while digit(i) {
            i += 1;
        }
    } else {
        return None;
    }
    // An exponent counts only when digits follow it ("1e" is not numeric).
    if i < s.len() && (s[i] == b'e' || s[i] == b'E') {
        let mut j = i + 1;
        if j < s.len() && (s[j] == b'-' || s[j] == b'+') {
            j += 1;
        }
        if digit(j) {
            is_float = true;
            i = j;
            while digit(i) {
                i += 1;
            }
        }
    }
    let end = i;
    while i < s.len() && is_ws(s[i]) {
        i += 1;
    }
    if i != s.len() {
        return None;
    }
    // The span is ASCII by construction.
    let text = std::str::from_utf8(&s[start..end]).ok()?;
    if !is_float {
        // PHP counts digits after leading zeros; 19 digits may still fit,
        // 20 never do, and both cases fall back to a float.
        let digits = s[int_start..end].iter().skip_while(|&&b| b == b'0').count();
        if digits < 20
            && let Ok(v) = text.parse::<i64>()
        {
            return Some(Numeric::Int(v));
        }
    }
    text.parse::<f64>().ok().map(Numeric::Float)
}

/// Shortest round-trip digits of `|f|` and the position of the decimal point
/// (`zend_dtoa` mode 0): `0.15` → ("15", 0), `1e17` → ("1", 18).
fn shortest_digits(f: f64, buf: &mut String) -> i32 {
    buf.clear();
    // `{:e}` prints the shortest representation that round-trips, which is
    // what `serialize_precision = -1` asks of zend_dtoa.
    let _ = write!(buf, "{:e}", f.abs());
    split_exponent(buf)
}

/// `|f|` rounded to `n` significant digits, trailing zeros removed
/// (`zend_dtoa` mode 2).
fn precision_digits(f: f64, n: usize, buf: &mut String) -> i32 {
    buf.clear();
    let _ = write!(buf, "{:.*e}", n.saturating_sub(1), f.abs());
    let decpt = split_exponent(buf);
    while buf.len() > 1 && buf.ends_with('0') {
        buf.pop();
    }
    decpt
}

/// Turns "d.ddde±x" in `buf` into the bare digits and returns the decimal
/// point position (exponent + 1).
fn split_exponent(buf: &mut String) -> i32 {
    let (mantissa, exp) = match buf.split_once('e') {
        Some((m, e)) => (m.to_owned(), e.parse::<i32>().unwrap_or(0)),
        None => (buf.clone(), 0),
    };
    buf.clear();
    buf.extend(mantissa.chars().filter(char::is_ascii_digit));
    if buf.is_empty() {
        buf.push('0');
    }
    if buf.bytes().all(|b| b == b'0') {
        // zend_dtoa reports zero as "0" with the point after it.
        buf.truncate(1);
        return 1;
    }
    exp + 1
}

/// `php_gcvt`: fixed notation unless the exponent is below -4 or needs more
/// than `ndigit` integer digits; exponent form always has a fraction
/// (`1.0e+17`) and no leading zeros in the exponent.
fn gcvt(out: &mut Vec<u8>, neg: bool, digits: &str, decpt: i32, ndigit: i32, exp_char: u8) {
    let d = digits.as_bytes();
    if neg {
        out.push(b'-');
    }
    if if decpt < 0 {
        decpt < -3
    } else {
        decpt > ndigit
    } {
        let e = decpt - 1;
        out.push(d[0]);
        out.push(b'.');
        if d.len() > 1 {
            out.extend_from_slice(&d[1..]);
        } else {
            out.push(b'0');
        }
        out.push(exp_char);
        out.push(if e < 0 { b'-' } else { b'+' });
        let mut b = itoa::Buffer::new();
        out.extend_from_slice(b.format(e.unsigned_abs()).as_bytes());
    } else if decpt < 0 {
        out.extend_from_slice(b"0.");
        for _ in decpt..0 {
            out.push(b'0');
        }
        out.extend_from_slice(d);
    } else {
        let decpt = decpt as usize;
        for i in 0..decpt {
            out.push(d.get(i).copied().unwrap_or(b'0'));
        }
        if d.len() > decpt {
            if decpt == 0 {
                out.push(b'0');
            }
            out.push(b'.');
            out.extend_from_slice(&d[decpt..]);
        }
    }
}

/// A finite float as `json_encode` prints it with `serialize_precision = -1`.
pub(crate) fn write_json_double(out: &mut Vec<u8>, f: f64, zero_frac: bool) {
    let mut buf = String::with_capacity(32);
    let decpt = shortest_digits(f, &mut buf);
    let start = out.len();
    gcvt(out, f.is_sign_negative(), &buf, decpt, 17, b'e');
    if zero_frac && !out[start..].contains(&b'.') {
        out.extend_from_slice(b".0");
    }
}

/// A float as PHP converts it to a string (`precision = 14`), as `fputcsv`
/// writes it: `1.0E+14`, `0.33333333333333`, `-0`, `INF`, `NAN`.
pub(crate) fn write_string_double(out: &mut Vec<u8>, f: f64) {
    if f.is_nan() {
        out.extend_from_slice(b"NAN");
        return;
    }
    if f.is_infinite() {
        out.extend_from_slice(if f < 0.0 { b"-INF" } else { b"INF" });
        return;
    }
    let mut buf = String::with_capacity(32);
    let decpt = precision_digits(f, 14, &mut buf);
    gcvt(out, f.is_sign_negative(), &buf, decpt, 14, b'E');
}

/// A finite float with its shortest round-trip digits and no `.0` (the
/// JSON form without flags); used where PHP's 14-digit string form would
/// lose data.
pub(crate) fn write_shortest_double(out: &mut Vec<u8>, f: f64) {
    if !f.is_finite() {
        write_string_double(out, f);
        return;
    }
    write_json_double(out, f, false);
}

fn trail(b: u8) -> bool {
    (0x80..=0xBF).contains(&b)
}

fn lead(b: u8) -> bool {
    b < 0x80 || (0xC2..=0xF4).contains(&b)
}

/// Decodes one UTF-8 character the way PHP's `php_next_utf8_char` does.
///
/// `Ok((code point, length))`, or `Err(n)`: the next `n` bytes form one
/// malformed sequence. PHP's notion of a sequence differs from Unicode's
/// "maximal subpart" (an encoded surrogate `ED A0 80` is one bad sequence,
/// not three), and that decides how many U+FFFD `invalid_utf8_substitute`
/// writes.
pub(crate) fn next_utf8(s: &[u8]) -> Result<(u32, usize), usize> {
    let Some(&c) = s.first() else {
        return Err(0);
    };
    let avail = s.len();
    let cont = |i: usize| u32::from(s[i] & 0x3F);
    if c < 0x80 {
        Ok((u32::from(c), 1))
    } else if c < 0xC2 {
        Err(1)
    } else if c < 0xE0 {
        if avail < 2 {
            return Err(1);
        }
        if !trail(s[1]) {
            return Err(if lead(s[1]) { 1 } else { 2 });
        }
        Ok(((u32::from(c & 0x1F) << 6) | cont(1), 2))
    } else if c < 0xF0 {
        if avail < 3 || !trail(s[1]) || !trail(s[2]) {
            return Err(if avail < 2 || lead(s[1]) {
                1
            } else if avail < 3 || lead(s[2]) {
                2
            } else {
                3
            });
        }
        let cp = (u32::from(c & 0x0F) << 12) | (cont(1) << 6) | cont(2);
        if cp < 0x800 || (0xD800..=0xDFFF).contains(&cp) {
            return Err(3);
        }
        Ok((cp, 3))
    } else if c < 0xF5 {
        if avail < 4 || !trail(s[1]) || !trail(s[2]) || !trail(s[3]) {
            return Err(if avail < 2 || lead(s[1]) {
                1
            } else if avail < 3 || lead(s[2]) {
                2
            } else if avail < 4 || lead(s[3]) {
                3
            } else {
                4
            });
        }
        let cp = (u32::from(c & 0x07) << 18) | (cont(1) << 12) | (cont(2) << 6) | cont(3);
        if !(0x10000..=0x10FFFF).contains(&cp) {
            return Err(4);
        }
        Ok((cp, 4))
    } else {
        Err(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(f: f64, zf: bool) -> String {
        let mut v = Vec::new();
        write_json_double(&mut v, f, zf);
        String::from_utf8(v).expect("ascii")
    }

    fn string(f: f64) -> String {
        let mut v = Vec::new();
        write_string_double(&mut v, f);
        String::from_utf8(v).expect("ascii")
    }

    #[test]
    fn json_floats_match_php_thresholds() {
        assert_eq!(json(0.1 + 0.2, false), "0.30000000000000004");
        assert_eq!(json(1e16, false), "10000000000000000");
        assert_eq!(json(1e17, false), "1.0e+17");
        assert_eq!(json(0.0001, false), "0.0001");
        assert_eq!(json(1e-5, false), "1.0e-5");
        assert_eq!(json(1.5e-7, false), "1.5e-7");
        assert_eq!(json(-0.0, false), "-0");
        assert_eq!(json(-0.0, true), "-0.0");
        assert_eq!(json(100.0, true), "100.0");
        assert_eq!(json(1e20, true), "1.0e+20");
        assert_eq!(json(0.5, false), "0.5");
        assert_eq!(json(9.223372036854776e18, false), "9.223372036854776e+18");
    }

    #[test]
    fn string_floats_use_fourteen_digits() {
        assert_eq!(string(0.1 + 0.2), "0.3");
        assert_eq!(string(1.0 / 3.0), "0.33333333333333");
        assert_eq!(string(1e14), "1.0E+14");
        assert_eq!(string(1e-5), "1.0E-5");
        assert_eq!(string(-0.0), "-0");
        assert_eq!(string(1.0), "1");
        assert_eq!(string(f64::NEG_INFINITY), "-INF");
        assert_eq!(string(f64::NAN), "NAN");
    }

    #[test]
    fn numeric_strings_follow_php8() {
        use Numeric::*;
        let n = |s: &str| numeric_string(s.as_bytes());
        assert_eq!(n(" 12"), Some(Int(12)));
        assert_eq!(n("12 "), Some(Int(12)));
        assert_eq!(n("1\n"), Some(Int(1)));
        assert_eq!(n("007"), Some(Int(7)));
        assert_eq!(n("+5"), Some(Int(5)));
        assert_eq!(n(".5"), Some(Float(0.5)));
        assert_eq!(n("1e3"), Some(Float(1000.0)));
        assert_eq!(n("1."), Some(Float(1.0)));
        assert_eq!(n("-0"), Some(Int(0)));
        assert_eq!(n("9223372036854775807"), Some(Int(i64::MAX)));
        assert_eq!(n("-9223372036854775808"), Some(Int(i64::MIN)));
        assert_eq!(n("9223372036854775808"), Some(Float(9.223372036854776e18)));
        assert_eq!(n("1e400"), Some(Float(f64::INFINITY)));
        for bad in ["0x1A", "12abc", "1_000", "", " ", "1e", ".", "-", "\u{661}"] {
            assert_eq!(n(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn utf8_decoder_groups_like_php() {
        assert_eq!(next_utf8(b"\xC3("), Err(1));
        assert_eq!(next_utf8(b"\xE2\x82"), Err(2));
        assert_eq!(next_utf8(b"\xED\xA0\x80"), Err(3));
        assert_eq!(next_utf8(b"\xFF"), Err(1));
        assert_eq!(next_utf8("é".as_bytes()), Ok((0xE9, 2)));
        assert_eq!(next_utf8("🔥".as_bytes()), Ok((0x1F525, 4)));
    }
}
