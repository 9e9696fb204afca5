//! `Content-Encoding: deflate` (RFC 1950 zlib streams, as belle-sip and Linphone use them):
//! bounded inflation of request bodies, compression of NOTIFY bodies, `Accept-Encoding` parsing.

/// Why a body could not be inflated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InflateError {
    /// The inflated body would exceed the cap (a decompression bomb, or just too large).
    TooLarge,
    /// Neither a valid zlib stream nor valid raw deflate data.
    Corrupt,
}

/// Inflates `data`, a zlib stream (RFC 1950, what Linphone sends) or, leniently, raw deflate data
/// (RFC 1951; sniffed: a zlib header has CM = 8, CINFO ≤ 7 and its first two bytes, read as a
/// big-endian u16, divisible by 31). Never produces more than `max` bytes: beyond that,
/// `TooLarge`. Uses miniz_oxide's bounded decompression.
pub fn inflate(data: &[u8], max: usize) -> Result<Vec<u8>, InflateError> {
    todo!("{data:?} {max}")
}

/// Compresses into a zlib stream (level 6, zlib's default).
pub fn deflate(data: &[u8]) -> Vec<u8> {
    todo!("{data:?}")
}

/// belle-sip's rule for NOTIFY bodies: compress only a body of at least 256 bytes, and only when
/// the result is at least 27 bytes smaller (the size of the `Content-Encoding` header it adds).
/// Returns the compressed body when it is worth sending.
pub fn deflate_if_smaller(data: &[u8]) -> Option<Vec<u8>> {
    todo!("{data:?}")
}

/// Whether `Accept-Encoding` header values (each a comma-separated list of codings with optional
/// `;q=` weights, RFC 3261 §20.2 / RFC 7231 §5.3.4) accept `deflate`: the token compared
/// case-insensitively; `q=0` refuses; `*` with q > 0 accepts unless deflate is refused explicitly.
pub fn accepts_deflate<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> bool {
    let _ = values;
    todo!()
}
