//! Bulk decoding of dm-thin mapping leaves (spec §4 node layout, §5.1 block_time): one
//! call turns a whole leaf into runs, so the offline tools (dump, ls, delta) do per-run
//! work in JS instead of per-mapping work. The TypeScript twin is `leafRuns` in
//! src/hot/twin.ts; both follow the contract in src/hot/hot-path.ts.

/// Bytes of a node header; keys follow it, then `max_entries` keys' room, then values.
const HEADER: usize = 32;
const NR_ENTRIES: usize = 16;
const MAX_ENTRIES: usize = 20;
const VALUE_SIZE: usize = 24;
/// Largest key JS can hold exactly.
const MAX_SAFE: u64 = (1 << 53) - 1;

fn u32_at(d: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([d[off], d[off + 1], d[off + 2], d[off + 3]])
}

fn u64_at(d: &[u8], off: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[off..off + 8]);
    u64::from_le_bytes(b)
}

/// The header's (nr_entries, max_entries) once it is checked to describe a leaf of 8-byte
/// values that fits in `leaf`; else the reason, for an E_INVALID.
pub fn header(leaf: &[u8]) -> Result<(usize, usize), String> {
    if leaf.len() < HEADER {
        return Err(format!("leaf must be at least {HEADER} bytes, got {}", leaf.len()));
    }
    let vs = u32_at(leaf, VALUE_SIZE);
    if vs != 8 {
        return Err(format!("leaf value_size must be 8 (block_time), got {vs}"));
    }
    let nr = u32_at(leaf, NR_ENTRIES) as usize;
    let max = u32_at(leaf, MAX_ENTRIES) as usize;
    if nr > max || HEADER + 16 * max > leaf.len() {
        return Err(format!(
            "leaf header does not fit: nr_entries {nr}, max_entries {max} in {} bytes",
            leaf.len()
        ));
    }
    Ok((nr, max))
}

/// Write the leaf's maximal runs into `set(k, v)` as (origin, data, length, time) at
/// 4k..4k+3: entries join a run while origin and data both advance by one (and, when
/// `with_time`, the time stays the same; otherwise a run keeps its first entry's time).
/// Returns the number of runs, or -1 (nothing promised about `set`) if a key is beyond
/// 2^53-1. `header` must have accepted `leaf`, giving `nr` and `max`.
pub fn runs(leaf: &[u8], nr: usize, max: usize, with_time: bool, mut set: impl FnMut(usize, f64)) -> i64 {
    let values = HEADER + 8 * max;
    let mut k = 0usize;
    let (mut o, mut d, mut len, mut t) = (0u64, 0u64, 0u64, 0u64);
    for i in 0..nr {
        let key = u64_at(leaf, HEADER + 8 * i);
        if key > MAX_SAFE {
            return -1;
        }
        let v = u64_at(leaf, values + 8 * i);
        let (data, time) = (v >> 24, v & 0xff_ffff);
        if len > 0 && key == o + len && data == d + len && (!with_time || time == t) {
            len += 1;
            continue;
        }
        if len > 0 {
            emit(&mut set, k, o, d, len, t);
            k += 1;
        }
        (o, d, len, t) = (key, data, 1, time);
    }
    if len > 0 {
        emit(&mut set, k, o, d, len, t);
        k += 1;
    }
    k as i64
}

fn emit(set: &mut impl FnMut(usize, f64), k: usize, o: u64, d: u64, len: u64, t: u64) {
    set(4 * k, o as f64);
    set(4 * k + 1, d as f64);
    set(4 * k + 2, len as f64);
    set(4 * k + 3, t as f64);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(entries: &[(u64, u64, u64)], max: usize) -> Vec<u8> {
        let mut d = vec![0u8; 4096];
        d[4..8].copy_from_slice(&2u32.to_le_bytes());
        d[NR_ENTRIES..NR_ENTRIES + 4].copy_from_slice(&(entries.len() as u32).to_le_bytes());
        d[MAX_ENTRIES..MAX_ENTRIES + 4].copy_from_slice(&(max as u32).to_le_bytes());
        d[VALUE_SIZE..VALUE_SIZE + 4].copy_from_slice(&8u32.to_le_bytes());
        for (i, (k, b, t)) in entries.iter().enumerate() {
            d[HEADER + 8 * i..HEADER + 8 * i + 8].copy_from_slice(&k.to_le_bytes());
            let v = (b << 24) | t;
            let at = HEADER + 8 * max + 8 * i;
            d[at..at + 8].copy_from_slice(&v.to_le_bytes());
        }
        d
    }

    fn decode(d: &[u8], with_time: bool) -> Vec<[f64; 4]> {
        let (nr, max) = header(d).unwrap();
        let mut out = vec![0f64; 4 * nr];
        let n = runs(d, nr, max, with_time, |k, v| out[k] = v);
        out.chunks(4).take(n as usize).map(|c| [c[0], c[1], c[2], c[3]]).collect()
    }

    #[test]
    fn runs_split_on_gaps_and_times() {
        let d = leaf(&[(0, 10, 1), (1, 11, 1), (2, 12, 2), (4, 14, 2), (5, 20, 2)], 254);
        assert_eq!(decode(&d, true), vec![[0., 10., 2., 1.], [2., 12., 1., 2.], [4., 14., 1., 2.], [5., 20., 1., 2.]]);
        assert_eq!(decode(&d, false), vec![[0., 10., 3., 1.], [4., 14., 1., 2.], [5., 20., 1., 2.]]);
    }

    #[test]
    fn bad_headers_and_huge_keys() {
        assert!(header(&[0u8; 31]).is_err());
        let mut d = leaf(&[(0, 1, 0)], 254);
        d[VALUE_SIZE] = 16;
        assert!(header(&d).is_err());
        let d = leaf(&[(0, 1, 0)], 300);
        assert!(header(&d).is_err());
        let d = leaf(&[(1 << 53, 1, 0)], 254);
        let (nr, max) = header(&d).unwrap();
        assert_eq!(runs(&d, nr, max, true, |_, _| {}), -1);
    }
}
