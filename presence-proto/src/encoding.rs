//! `Content-Encoding: deflate` (RFC 1950 zlib streams, as belle-sip and Linphone use them):
//! bounded inflation of request bodies, compression of NOTIFY bodies, `Accept-Encoding` parsing.

use miniz_oxide::inflate::{
    TINFLStatus, decompress_to_vec_with_limit, decompress_to_vec_zlib_with_limit,
};

/// Why a body could not be inflated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InflateError {
    /// The inflated body would exceed the cap (a decompression bomb, or just too large).
    TooLarge,
    /// Neither a valid zlib stream nor valid raw deflate data.
    Corrupt,
}

impl std::fmt::Display for InflateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            InflateError::TooLarge => "inflated body too large",
            InflateError::Corrupt => "corrupt deflate data",
        })
    }
}

impl std::error::Error for InflateError {}

/// belle-sip compresses only bodies of at least this many bytes.
pub const MIN_DEFLATE_INPUT: usize = 256;
/// ... and only when compression saves at least this many bytes (its `Content-Encoding` header).
pub const MIN_DEFLATE_SAVING: usize = 27;

/// Inflates `data`, a zlib stream (RFC 1950, what Linphone sends) or, leniently, raw deflate data
/// (RFC 1951; sniffed: a zlib header has CM = 8, CINFO ≤ 7 and its first two bytes, read as a
/// big-endian u16, divisible by 31). Never produces more than `max` bytes: beyond that,
/// `TooLarge`. Uses miniz_oxide's bounded decompression.
///
/// An empty `data` inflates to an empty body (liblinphone's unsubscribe may carry
/// `Content-Encoding: deflate` with no body). Bytes after the end of the stream are ignored.
/// The output buffer grows by doubling up to `max` bytes, never beyond.
pub fn inflate(data: &[u8], max: usize) -> Result<Vec<u8>, InflateError> {
    if data.is_empty() {
        return Ok(Vec::new());
    }
    // miniz_oxide grows its buffer by doubling up to `max`, and reports `HasMoreOutput` only
    // when the stream has more than `max` bytes (a body of exactly `max` bytes is `Done`:
    // checked by the tests).
    let result = if is_zlib_header(data) {
        decompress_to_vec_zlib_with_limit(data, max)
    } else {
        decompress_to_vec_with_limit(data, max)
    };
    match result {
        Ok(out) if out.len() <= max => Ok(out),
        Ok(_) => Err(InflateError::TooLarge),
        Err(e) if e.status == TINFLStatus::HasMoreOutput => Err(InflateError::TooLarge),
        Err(_) => Err(InflateError::Corrupt),
    }
}

/// Whether `data` starts with a zlib (RFC 1950) header: CM = 8 (deflate), CINFO ≤ 7 (window of
/// at most 32 KiB), and CMF·256 + FLG a multiple of 31.
pub fn is_zlib_header(data: &[u8]) -> bool {
    match data {
        [cmf, flg, ..] => {
            cmf & 0x0F == 8 && cmf >> 4 <= 7 && (u16::from(*cmf) << 8 | u16::from(*flg)) % 31 == 0
        }
        _ => false,
    }
}

/// Compresses into a zlib stream (level 6, zlib's default).
pub fn deflate(data: &[u8]) -> Vec<u8> {
    miniz_oxide::deflate::compress_to_vec_zlib(data, 6)
}

/// belle-sip's rule for NOTIFY bodies: compress only a body of at least 256 bytes, and only when
/// the result is at least 27 bytes smaller (the size of the `Content-Encoding` header it adds).
/// Returns the compressed body when it is worth sending.
pub fn deflate_if_smaller(data: &[u8]) -> Option<Vec<u8>> {
    if data.len() < MIN_DEFLATE_INPUT {
        return None;
    }
    let compressed = deflate(data);
    (compressed.len().saturating_add(MIN_DEFLATE_SAVING) <= data.len()).then_some(compressed)
}

/// Whether `Accept-Encoding` header values (each a comma-separated list of codings with optional
/// `;q=` weights, RFC 3261 §20.2 / RFC 7231 §5.3.4) accept `deflate`: the token compared
/// case-insensitively; `q=0` refuses; `*` with q > 0 accepts unless deflate is refused explicitly.
///
/// Weights: any decimal number whose value is zero (`0`, `0.0`, `0.000`, `.0`) refuses, any other
/// decimal number accepts. A malformed weight (`q=`, `q=abc`, a bare `q`) also refuses, as nginx
/// does: compressing for a client whose header we cannot read risks a NOTIFY it cannot decode,
/// not compressing only costs bytes. When `deflate` is listed more than once, one refusal wins.
/// No header (an empty iterator) accepts nothing (RFC 3261: identity only).
pub fn accepts_deflate<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> bool {
    let mut deflate: Option<bool> = None;
    let mut star: Option<bool> = None;
    for value in values {
        for item in value.split(|&b| b == b',') {
            let mut fields = item.split(|&b| b == b';');
            let coding = trim_lws(fields.next().unwrap_or_default());
            if coding.is_empty() {
                continue;
            }
            let mut accepted = true;
            for param in fields {
                let (name, weight) = match param.iter().position(|&b| b == b'=') {
                    Some(i) => (&param[..i], Some(&param[i + 1..])),
                    None => (param, None),
                };
                if trim_lws(name).eq_ignore_ascii_case(b"q") {
                    accepted &= weight.is_some_and(|w| q_is_positive(trim_lws(w)));
                }
            }
            let slot = if coding.eq_ignore_ascii_case(b"deflate") {
                &mut deflate
            } else if coding == b"*" {
                &mut star
            } else {
                continue;
            };
            *slot = Some(slot.unwrap_or(true) && accepted);
        }
    }
    deflate.or(star).unwrap_or(false)
}

/// A weight `digits [ "." digits ]` (at least one digit, quotes tolerated) with a non-zero value.
fn q_is_positive(w: &[u8]) -> bool {
    let w = w
        .strip_prefix(b"\"")
        .and_then(|w| w.strip_suffix(b"\""))
        .unwrap_or(w);
    let (int, frac) = match w.iter().position(|&b| b == b'.') {
        Some(i) => (&w[..i], &w[i + 1..]),
        None => (w, &[][..]),
    };
    let digits = |s: &[u8]| s.iter().all(u8::is_ascii_digit);
    if int.len() + frac.len() == 0 || !digits(int) || !digits(frac) {
        return false;
    }
    int.iter().chain(frac).any(|&b| b != b'0')
}

/// Trims linear white space (SP, HTAB, and the CR LF of folded lines).
fn trim_lws(s: &[u8]) -> &[u8] {
    let is_lws = |b: &u8| matches!(b, b' ' | b'\t' | b'\r' | b'\n');
    let start = s.iter().position(|b| !is_lws(b)).unwrap_or(s.len());
    let end = s.iter().rposition(|b| !is_lws(b)).map_or(start, |i| i + 1);
    &s[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zlib_round_trip_and_exact_limit() {
        for len in [0usize, 1, 2, 100, 255, 256, 4096, 70_000] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            let z = deflate(&data);
            assert!(is_zlib_header(&z), "{len}");
            assert_eq!(inflate(&z, len).as_deref(), Ok(&data[..]), "{len}");
            assert_eq!(inflate(&z, usize::MAX).as_deref(), Ok(&data[..]), "{len}");
            if len > 0 {
                assert_eq!(inflate(&z, len - 1), Err(InflateError::TooLarge), "{len}");
            }
        }
    }

    #[test]
    fn raw_deflate_is_accepted() {
        let data = b"<resource-lists xmlns=\"urn:ietf:params:xml:ns:resource-lists\"/>".repeat(5);
        let raw = miniz_oxide::deflate::compress_to_vec(&data, 6);
        assert!(!is_zlib_header(&raw));
        assert_eq!(inflate(&raw, 1 << 20), Ok(data.clone()));
        assert_eq!(inflate(&raw, data.len() - 1), Err(InflateError::TooLarge));
    }

    #[test]
    fn linphone_header() {
        // The first bytes of the captured list SUBSCRIBE body: 78 9c (zlib, default level).
        assert!(is_zlib_header(&[0x78, 0x9c, 0x6d, 0x8e]));
        assert!(is_zlib_header(&[0x78, 0x01]));
        assert!(is_zlib_header(&[0x78, 0xda]));
        assert!(!is_zlib_header(&[0x78]));
        assert!(!is_zlib_header(&[0x78, 0x9d]));
        // CINFO 8 (a 64 KiB window) is not zlib.
        assert!(!is_zlib_header(&[0x88, 0x98]));
    }

    #[test]
    fn corrupt_inputs() {
        let z = deflate(b"hello hello hello hello");
        // Truncated, bad checksum, garbage, a zlib header alone.
        assert_eq!(inflate(&z[..z.len() - 5], 1000), Err(InflateError::Corrupt));
        let mut bad = z.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(inflate(&bad, 1000), Err(InflateError::Corrupt));
        assert_eq!(
            inflate(b"\xff\xff\xff\xff", 1000),
            Err(InflateError::Corrupt)
        );
        assert_eq!(inflate(&[0x78, 0x9c], 1000), Err(InflateError::Corrupt));
        // A preset dictionary (FDICT) is not supported.
        assert_eq!(
            inflate(&[0x78, 0xbb, 0, 0, 0, 1, 3, 0], 1000),
            Err(InflateError::Corrupt)
        );
        assert_eq!(inflate(b"", 0), Ok(Vec::new()));
    }

    #[test]
    fn bomb_stops_at_the_cap() {
        let zeros = vec![0u8; 10 << 20];
        let z = deflate(&zeros);
        assert!(z.len() < 64 << 10);
        let t = std::time::Instant::now();
        assert_eq!(inflate(&z, 1 << 20), Err(InflateError::TooLarge));
        assert!(t.elapsed() < std::time::Duration::from_secs(5));
        assert_eq!(inflate(&z, 0), Err(InflateError::TooLarge));
    }

    #[test]
    fn deflate_if_smaller_follows_belle_sip() {
        assert_eq!(deflate_if_smaller(&[b'a'; 255]), None);
        let big = b"<resource uri=\"sip:a@b\"/>".repeat(20);
        let c = deflate_if_smaller(&big).unwrap();
        assert!(c.len() + 27 <= big.len());
        assert_eq!(inflate(&c, big.len()), Ok(big));
        // Incompressible: 300 bytes of a full-period sequence do not shrink by 27 bytes.
        let noise: Vec<u8> = (0u32..300)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        assert_eq!(deflate_if_smaller(&noise), None);
    }

    fn accepts(values: &[&str]) -> bool {
        accepts_deflate(values.iter().map(|v| v.as_bytes()))
    }

    #[test]
    fn accept_encoding() {
        assert!(accepts(&["deflate"]));
        assert!(accepts(&["Deflate"]));
        assert!(accepts(&["gzip, DEFLATE"]));
        assert!(accepts(&["gzip", "deflate"]));
        assert!(accepts(&[" gzip ;q=1 ,\t deflate ; q = 0.5 "]));
        assert!(accepts(&["deflate;q=0.001"]));
        assert!(accepts(&["deflate;q=1.000"]));
        assert!(accepts(&["deflate;level=3"]));
        assert!(accepts(&["*"]));
        assert!(accepts(&["gzip;q=0, *;q=0.1"]));
        assert!(!accepts(&[]));
        assert!(!accepts(&[""]));
        assert!(!accepts(&["gzip"]));
        assert!(!accepts(&["identity"]));
        assert!(!accepts(&["deflated"]));
        assert!(!accepts(&["x-deflate"]));
        for zero in ["0", "0.0", "0.000", ".0", "0.", "00", "\"0\""] {
            assert!(!accepts(&[&format!("deflate;q={zero}")]), "{zero}");
            assert!(!accepts(&[&format!("*;q={zero}")]), "{zero}");
        }
        // Explicit refusal wins over `*`, and over another listing of deflate.
        assert!(!accepts(&["*, deflate;q=0"]));
        assert!(!accepts(&["deflate;q=0", "*"]));
        assert!(!accepts(&["deflate, deflate;q=0"]));
        // `*` refused but deflate listed: accepted.
        assert!(accepts(&["*;q=0, deflate"]));
        // Malformed weights refuse.
        for bad in [
            "deflate;q=",
            "deflate;q",
            "deflate;q=abc",
            "deflate;q=1.x",
            "deflate;q=.",
        ] {
            assert!(!accepts(&[bad]), "{bad}");
        }
        // Empty items are skipped.
        assert!(accepts(&[",,deflate,"]));
        // Non-UTF-8 bytes never panic.
        assert!(!accepts_deflate([&b"\xff\xfe;q=\xff"[..]]));
    }
}
