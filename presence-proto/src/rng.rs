//! A small seeded pseudo-random generator (SplitMix64): tags, ETags and branches are drawn from it,
//! so a run with the same seed and inputs is byte-for-byte reproducible.

/// SplitMix64 generator.
#[derive(Debug, Clone)]
pub struct Rng(u64);

const ALPHABET: &[u8; 64] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_";

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Appends `len` characters from a token-safe 64-symbol alphabet.
    pub fn token_into(&mut self, len: usize, out: &mut String) {
        let mut bits = 0u64;
        let mut left = 0;
        for _ in 0..len {
            if left == 0 {
                bits = self.next_u64();
                left = 10;
            }
            out.push(ALPHABET[(bits & 63) as usize] as char);
            bits >>= 6;
            left -= 1;
        }
    }
    pub fn token(&mut self, len: usize) -> String {
        let mut s = String::with_capacity(len);
        self.token_into(len, &mut s);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_tokens_and_alphabet_is_token_safe() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        let ta = a.token(32);
        assert_eq!(ta, b.token(32));
        assert_ne!(ta, Rng::new(8).token(32));
        assert!(
            ta.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
    }
}
