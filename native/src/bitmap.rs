//! 2-bit reference-count bitmaps in dm-thin encoding (spec §6.1).
//!
//! Entry `i` lives in byte `i >> 2`; inside that byte bit `2*(i&3)` is the HIGH bit of the
//! count and bit `2*(i&3)+1` the LOW bit. So 0xAA = four entries of count 1, 0x55 = four of
//! count 2, 0xFF = four of count 3. Read as a little-endian u64, entry `j` of the word
//! (j = 0..32) occupies bits `2j` (high) and `2j+1` (low), which is what the word-level
//! scans below rely on.
//!
//! All functions take plain byte slices, which may start at any address (JS Buffer slices
//! are unaligned), so words are read with `from_le_bytes` and never through `*const u64`.
//! Callers validate that entry indices fit in the slice; the functions here assert it.

/// Mask of the even (high-bit) position of every 2-bit pair in a word.
const EVEN: u64 = 0x5555_5555_5555_5555;
/// Entries per 64-bit word.
const PER_WORD: usize = 32;

/// Count of entry `i` (0..=3).
#[inline]
pub fn get(buf: &[u8], i: usize) -> u8 {
    let b = buf[i >> 2];
    let shift = 2 * (i & 3);
    let high = (b >> shift) & 1;
    let low = (b >> (shift + 1)) & 1;
    (high << 1) | low
}

/// Set entry `i` to `v` (only the low two bits of `v` are used).
#[inline]
pub fn set(buf: &mut [u8], i: usize, v: u8) {
    let shift = 2 * (i & 3);
    // High bit of the count goes to the lower bit position: that is the dm-thin quirk.
    let bits = (((v >> 1) & 1) | ((v & 1) << 1)) << shift;
    let b = &mut buf[i >> 2];
    *b = (*b & !(3 << shift)) | bits;
}

/// Word number `w` of the bitmap, zero-padded past the end of the slice.
#[inline(always)]
fn load_word(buf: &[u8], w: usize) -> u64 {
    let start = w * 8;
    if let Some(bytes) = buf.get(start..start + 8) {
        u64::from_le_bytes(bytes.try_into().unwrap())
    } else {
        let mut tmp = [0u8; 8];
        let tail = &buf[start.min(buf.len())..];
        tmp[..tail.len()].copy_from_slice(tail);
        u64::from_le_bytes(tmp)
    }
}

/// EVEN-position mask for entries `lo..hi` of one word (0 <= lo < hi <= 32).
#[inline(always)]
fn pair_mask(lo: usize, hi: usize) -> u64 {
    let upper = if hi >= PER_WORD {
        EVEN
    } else {
        EVEN & ((1u64 << (2 * hi)) - 1)
    };
    upper & (EVEN << (2 * lo))
}

/// One bit (at the pair's even position) for every pair of `w` that is 00.
#[inline(always)]
fn zero_pairs(w: u64) -> u64 {
    !(w | (w >> 1)) & EVEN
}

/// First entry with count 0 in `[from, to)`, if any.
fn scan_free(buf: &[u8], from: usize, to: usize) -> Option<usize> {
    if from >= to {
        return None;
    }
    let first_w = from / PER_WORD;
    let last_w = (to - 1) / PER_WORD;

    // Head word (may also be the tail word).
    let hi = if first_w == last_w {
        to - first_w * PER_WORD
    } else {
        PER_WORD
    };
    let z = zero_pairs(load_word(buf, first_w)) & pair_mask(from % PER_WORD, hi);
    if z != 0 {
        return Some(first_w * PER_WORD + z.trailing_zeros() as usize / 2);
    }
    if first_w == last_w {
        return None;
    }

    // Whole words strictly between head and tail: the hot loop. Four words are folded
    // together so the common "no free entry here" case costs one branch per 32 bytes;
    // the exact position is recomputed only for the block that has a hit.
    let mid_start = (first_w + 1) * 8;
    let mid_end = last_w * 8; // byte offset of the tail word (whole words in between are in bounds)
    let mid = &buf[mid_start..mid_end];
    let mut blocks = mid.chunks_exact(32);
    let mut base = mid_start;
    for blk in &mut blocks {
        let w0 = u64::from_le_bytes(blk[0..8].try_into().unwrap());
        let w1 = u64::from_le_bytes(blk[8..16].try_into().unwrap());
        let w2 = u64::from_le_bytes(blk[16..24].try_into().unwrap());
        let w3 = u64::from_le_bytes(blk[24..32].try_into().unwrap());
        if (zero_pairs(w0) | zero_pairs(w1) | zero_pairs(w2) | zero_pairs(w3)) != 0 {
            for (k, w) in [w0, w1, w2, w3].into_iter().enumerate() {
                let z = zero_pairs(w);
                if z != 0 {
                    return Some((base + k * 8) * 4 + z.trailing_zeros() as usize / 2);
                }
            }
        }
        base += 32;
    }
    for word in blocks.remainder().chunks_exact(8) {
        let z = zero_pairs(u64::from_le_bytes(word.try_into().unwrap()));
        if z != 0 {
            return Some(base * 4 + z.trailing_zeros() as usize / 2);
        }
        base += 8;
    }

    // Tail word.
    let z = zero_pairs(load_word(buf, last_w)) & pair_mask(0, to - last_w * PER_WORD);
    if z != 0 {
        return Some(last_w * PER_WORD + z.trailing_zeros() as usize / 2);
    }
    None
}

/// First entry with count 0, scanning `[cursor, end)` and then wrapping to `[begin, cursor)`.
/// A cursor outside `[begin, end)` is treated as `begin`.
///
/// Panics if `end > 4 * buf.len()` or `begin > end` (callers validate first).
pub fn find_free(buf: &[u8], begin: usize, end: usize, cursor: usize) -> Option<usize> {
    assert!(
        begin <= end && end <= buf.len() * 4,
        "bitmap range out of bounds"
    );
    let cursor = if cursor < begin || cursor >= end {
        begin
    } else {
        cursor
    };
    scan_free(buf, cursor, end).or_else(|| scan_free(buf, begin, cursor))
}

/// Number of entries with count 0, 1, 2 and 3 in `[begin, end)`.
///
/// Panics if `end > 4 * buf.len()` or `begin > end`.
pub fn count(buf: &[u8], begin: usize, end: usize) -> [u64; 4] {
    assert!(
        begin <= end && end <= buf.len() * 4,
        "bitmap range out of bounds"
    );
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("popcnt") {
            // SAFETY: the CPU supports POPCNT, checked just above.
            return unsafe { count_popcnt(buf, begin, end) };
        }
    }
    count_core(buf, begin, end)
}

/// `count_core` compiled with the POPCNT instruction enabled (the baseline x86_64 target
/// lacks it, and the software popcount is several times slower).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "popcnt")]
unsafe fn count_popcnt(buf: &[u8], begin: usize, end: usize) -> [u64; 4] {
    count_core(buf, begin, end)
}

#[inline(always)]
fn count_core(buf: &[u8], begin: usize, end: usize) -> [u64; 4] {
    // Only counts 1, 2 and 3 are counted directly; count 0 is the remainder.
    let (mut c1, mut c2, mut c3) = (0u64, 0u64, 0u64);
    let mut tally = |w: u64, m: u64| {
        let high = w & m;
        let low = (w >> 1) & m;
        c3 += (high & low).count_ones() as u64;
        c2 += (high & !low).count_ones() as u64;
        c1 += (!high & low).count_ones() as u64;
    };
    if begin < end {
        let first_w = begin / PER_WORD;
        let last_w = (end - 1) / PER_WORD;
        if first_w == last_w {
            tally(
                load_word(buf, first_w),
                pair_mask(begin % PER_WORD, end - first_w * PER_WORD),
            );
        } else {
            tally(
                load_word(buf, first_w),
                pair_mask(begin % PER_WORD, PER_WORD),
            );
            for word in buf[(first_w + 1) * 8..last_w * 8].chunks_exact(8) {
                tally(u64::from_le_bytes(word.try_into().unwrap()), EVEN);
            }
            tally(
                load_word(buf, last_w),
                pair_mask(0, end - last_w * PER_WORD),
            );
        }
    }
    let total = (end - begin) as u64;
    [total - c1 - c2 - c3, c1, c2, c3]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tiny deterministic PRNG (xorshift64*): no crates available.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    fn model_find(buf: &[u8], begin: usize, end: usize, cursor: usize) -> Option<usize> {
        let c = if cursor < begin || cursor >= end {
            begin
        } else {
            cursor
        };
        (c..end).chain(begin..c).find(|&i| get(buf, i) == 0)
    }

    #[test]
    fn spec_bytes() {
        assert!((0..4).all(|i| get(&[0xAA], i) == 1));
        assert!((0..4).all(|i| get(&[0x55], i) == 2));
        assert!((0..4).all(|i| get(&[0xFF], i) == 3));
        // Metadata bitmap `aa aa a8`: blocks 0-7 count 1, block 8 free, 9-11 count 1.
        let m = [0xAA, 0xAA, 0xA8];
        let counts: Vec<u8> = (0..12).map(|i| get(&m, i)).collect();
        assert_eq!(counts, [1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1]);
        assert_eq!(find_free(&m, 0, 12, 0), Some(8));
        // `65` = counts (2, 2, 1, 2).
        assert_eq!(
            (0..4).map(|i| get(&[0x65], i)).collect::<Vec<_>>(),
            [2, 2, 1, 2]
        );
    }

    #[test]
    fn set_round_trip() {
        let mut b = [0u8; 3];
        for (i, v) in [1u8, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1]
            .into_iter()
            .enumerate()
        {
            set(&mut b, i, v);
        }
        assert_eq!(b, [0xAA, 0xAA, 0xA8]);
        set(&mut b, 5, 2);
        assert_eq!(get(&b, 5), 2);
        assert_eq!(get(&b, 4), 1);
        assert_eq!(get(&b, 6), 1);
    }

    #[test]
    fn find_free_matches_model_on_random_bitmaps() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for round in 0..3000 {
            let len = rng.below(200);
            let mut storage = vec![0u8; len + 7];
            let off = rng.below(8); // exercise unaligned starts
            let buf = &mut storage[off..off + len];
            // Mostly-full bitmaps with a few zero entries, sometimes none at all.
            let density = rng.below(4);
            for i in 0..len * 4 {
                let v = if density == 0 {
                    1 + rng.below(3) as u8
                } else if rng.below(40 * density) == 0 {
                    0
                } else {
                    1 + rng.below(3) as u8
                };
                set(buf, i, v);
            }
            if round % 7 == 0 {
                buf.fill(0);
            }
            let n = len * 4;
            let end = if n == 0 { 0 } else { rng.below(n + 1) };
            let begin = if end == 0 { 0 } else { rng.below(end + 1) };
            let cursor = rng.below(n + 40);
            assert_eq!(
                find_free(buf, begin, end, cursor),
                model_find(buf, begin, end, cursor),
                "len {len} [{begin},{end}) c {cursor}"
            );
            let mut expect = [0u64; 4];
            (begin..end).for_each(|i| expect[get(buf, i) as usize] += 1);
            assert_eq!(count(buf, begin, end), expect);
            assert_eq!(count_core(buf, begin, end), expect);
        }
    }

    #[test]
    fn find_free_wraps_and_finds_last_entry() {
        let mut b = vec![0xAAu8; 4096];
        assert_eq!(find_free(&b, 0, 16384, 0), None);
        set(&mut b, 16383, 0);
        assert_eq!(find_free(&b, 0, 16384, 0), Some(16383));
        assert_eq!(find_free(&b, 0, 16383, 0), None);
        set(&mut b, 3, 0);
        assert_eq!(find_free(&b, 0, 16384, 10), Some(16383));
        assert_eq!(find_free(&b, 0, 16383, 10), Some(3));
        assert_eq!(find_free(&b, 0, 16384, 99999), Some(3));
        assert_eq!(find_free(&b, 5, 5, 0), None);
    }
}
