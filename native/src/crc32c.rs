//! CRC-32C (Castagnoli) as dm-thin uses it (spec §2.1).
//!
//! `update` returns the RAW register: reflected polynomial 0x82F63B78, no final inversion.
//! The standard CRC-32C of data is `!update(0xFFFF_FFFF, data)`. A dm-thin metadata block
//! checksum is `update(0xFFFF_FFFF, &block[4..]) ^ salt`, stored little-endian at offset 0.
//!
//! On x86_64 with SSE4.2 the `crc32` instruction is used (it computes exactly this
//! reflected, non-inverted register update); elsewhere a slice-by-8 table.

/// Bit-reflected Castagnoli polynomial.
pub const POLY: u32 = 0x82F6_3B78;

/// Salts of the four metadata block types (spec §2.1), for tests and callers.
pub const SUPERBLOCK_SALT: u32 = 160_774;
pub const BTREE_SALT: u32 = 121_107;
pub const BITMAP_SALT: u32 = 240_779;
pub const INDEX_SALT: u32 = 160_478;

/// Slice-by-8 tables built at compile time: TABLES[0] is the classic byte table and
/// TABLES[k][b] is the register contribution of byte `b` followed by `k` zero bytes.
static TABLES: [[u32; 256]; 8] = make_tables();

const fn make_tables() -> [[u32; 256]; 8] {
    let mut t = [[0u32; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { (c >> 1) ^ POLY } else { c >> 1 };
            k += 1;
        }
        t[0][i] = c;
        i += 1;
    }
    let mut s = 1;
    while s < 8 {
        let mut i = 0;
        while i < 256 {
            let prev = t[s - 1][i];
            t[s][i] = (prev >> 8) ^ t[0][(prev & 0xFF) as usize];
            i += 1;
        }
        s += 1;
    }
    t
}

/// Portable slice-by-8 update of the raw register.
pub fn update_table(mut crc: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let lo = crc ^ u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        crc = TABLES[7][(lo & 0xFF) as usize]
            ^ TABLES[6][((lo >> 8) & 0xFF) as usize]
            ^ TABLES[5][((lo >> 16) & 0xFF) as usize]
            ^ TABLES[4][(lo >> 24) as usize]
            ^ TABLES[3][c[4] as usize]
            ^ TABLES[2][c[5] as usize]
            ^ TABLES[1][c[6] as usize]
            ^ TABLES[0][c[7] as usize];
    }
    for &b in chunks.remainder() {
        crc = (crc >> 8) ^ TABLES[0][((crc ^ b as u32) & 0xFF) as usize];
    }
    crc
}

/// Hardware update: one `crc32 r64` per 8 bytes. A single dependency chain runs at about
/// 8 bytes / 3 cycles, which already makes a 4 KiB block a sub-microsecond job, so the
/// 3-way interleave (which needs a carry-less-multiply merge) is not worth its code here.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2")]
unsafe fn update_sse42(crc: u32, data: &[u8]) -> u32 {
    use std::arch::x86_64::{_mm_crc32_u64, _mm_crc32_u8};
    let mut c = crc as u64;
    let mut chunks = data.chunks_exact(8);
    for w in &mut chunks {
        // Unaligned-safe load; the instruction consumes the word little-endian.
        c = _mm_crc32_u64(c, u64::from_le_bytes(w.try_into().unwrap()));
    }
    let mut crc = c as u32;
    for &b in chunks.remainder() {
        crc = _mm_crc32_u8(crc, b);
    }
    crc
}

/// Raw register after feeding `data` starting from `crc` (use 0xFFFF_FFFF to start).
#[inline]
pub fn update(crc: u32, data: &[u8]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    {
        // std caches the CPUID result, so this is a load and a test per call.
        if std::arch::is_x86_feature_detected!("sse4.2") {
            // SAFETY: the CPU supports SSE4.2, checked just above.
            return unsafe { update_sse42(crc, data) };
        }
    }
    update_table(crc, data)
}

/// dm-thin metadata block checksum: raw register over `block[4..]`, XOR `salt`.
/// Panics if the block is shorter than 4 bytes (callers validate).
#[inline]
pub fn block_checksum(block: &[u8], salt: u32) -> u32 {
    update(0xFFFF_FFFF, &block[4..]) ^ salt
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_check_value() {
        assert_eq!(!update(0xFFFF_FFFF, b"123456789"), 0xE306_9283);
        assert_eq!(!update_table(0xFFFF_FFFF, b"123456789"), 0xE306_9283);
    }

    #[test]
    fn spec_vectors_for_zero_block() {
        let block = [0u8; 4096];
        assert_eq!(update(0xFFFF_FFFF, &block[4..]), 0x58CD_A791);
        assert_eq!(block_checksum(&block, SUPERBLOCK_SALT), 1_490_015_127);
        assert_eq!(block_checksum(&block, BTREE_SALT), 0x58CC_7E82);
        assert_eq!(block_checksum(&block, BITMAP_SALT), 0x58CE_0B1A);
        assert_eq!(block_checksum(&block, INDEX_SALT), 0x58CF_D54F);
    }

    #[test]
    fn hardware_and_table_agree_on_all_lengths_and_offsets() {
        let data: Vec<u8> = (0..600u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for start in 0..9 {
            for len in 0..(data.len() - start) {
                let s = &data[start..start + len];
                let bitwise = s.iter().fold(0xFFFF_FFFFu32, |mut c, &b| {
                    c ^= b as u32;
                    for _ in 0..8 {
                        c = if c & 1 != 0 { (c >> 1) ^ POLY } else { c >> 1 };
                    }
                    c
                });
                assert_eq!(update_table(0xFFFF_FFFF, s), bitwise);
                assert_eq!(update(0xFFFF_FFFF, s), bitwise);
            }
        }
    }

    #[test]
    fn update_is_incremental() {
        let data = b"The quick brown fox jumps over the lazy dog";
        let whole = update(0xFFFF_FFFF, data);
        let split = update(update(0xFFFF_FFFF, &data[..13]), &data[13..]);
        assert_eq!(whole, split);
    }
}
