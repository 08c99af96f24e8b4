use super::*;
use std::fs::File;
use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

fn temp(name: &str) -> PathBuf {
    let mut p = std::env::temp_dir();
    p.push(format!("thinsim-native-{}-{}", std::process::id(), name));
    p
}

fn rw(path: &PathBuf) -> File {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .unwrap()
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 131 + 7) as u8).collect()
}

#[test]
fn copy_range_copies_and_stops_at_eof() {
    let (pa, pb) = (temp("copy-a"), temp("copy-b"));
    let data = pattern(300_000);
    let mut a = rw(&pa);
    a.write_all(&data).unwrap();
    let b = rw(&pb);
    assert_eq!(
        copy_range(a.as_raw_fd(), 1000, b.as_raw_fd(), 10, 200_000),
        Ok(200_000)
    );
    // Past EOF of the source: short count, nothing invented.
    assert_eq!(
        copy_range(a.as_raw_fd(), 250_000, b.as_raw_fd(), 500_000, 100_000),
        Ok(50_000)
    );
    assert_eq!(
        copy_range(a.as_raw_fd(), 400_000, b.as_raw_fd(), 0, 10),
        Ok(0)
    );
    let mut out = Vec::new();
    File::open(&pb).unwrap().read_to_end(&mut out).unwrap();
    assert_eq!(out.len(), 550_000);
    assert_eq!(&out[10..200_010], &data[1000..201_000]);
    assert_eq!(&out[500_000..], &data[250_000..]);
    // The bounce path alone gives the same bytes.
    let pc = temp("copy-c");
    let c = rw(&pc);
    assert_eq!(
        sys::copy_bounce(a.as_raw_fd(), 1000, c.as_raw_fd(), 10, 200_000),
        Ok(200_000)
    );
    let mut out2 = Vec::new();
    File::open(&pc).unwrap().read_to_end(&mut out2).unwrap();
    assert_eq!(&out2[10..], &data[1000..201_000]);
    for p in [pa, pb, pc] {
        std::fs::remove_file(p).unwrap();
    }
}

#[test]
fn copy_range_reports_bad_descriptor() {
    let e = copy_range(-1, 0, 1, 0, 10).unwrap_err();
    assert_eq!(
        e,
        ChunkError::Sys {
            syscall: "copy_file_range",
            errno: crate::errno::EBADF
        }
    );
    let e = sys::copy_bounce(-1, 0, 1, 0, 10).unwrap_err();
    assert_eq!(
        e,
        ChunkError::Sys {
            syscall: "pread",
            errno: crate::errno::EBADF
        }
    );
}

/// The path every non-Linux Unix takes (and Linux when fallocate is refused).
#[test]
fn zero_by_writing_never_grows_on_punch() {
    let p = temp("zero-write");
    let mut f = rw(&p);
    f.write_all(&vec![0xEE; 100_000]).unwrap();
    assert_eq!(
        zero_by_writing(f.as_raw_fd(), 1000, 2000, false),
        Ok(ZeroMethod::WroteZeros)
    );
    // A punch stops at EOF; a plain zeroing grows the file like a write.
    zero_by_writing(f.as_raw_fd(), 99_000, 5000, true).unwrap();
    assert_eq!(f.metadata().unwrap().len(), 100_000);
    zero_by_writing(f.as_raw_fd(), 99_500, 1000, false).unwrap();
    assert_eq!(f.metadata().unwrap().len(), 100_500);
    let mut out = Vec::new();
    File::open(&p).unwrap().read_to_end(&mut out).unwrap();
    for (i, &b) in out.iter().enumerate() {
        let zero = (1000..3000).contains(&i) || i >= 99_000;
        assert_eq!(b == 0, zero, "byte {i}");
    }
    std::fs::remove_file(p).unwrap();
}

#[test]
fn zero_and_punch() {
    let p = temp("zero");
    let mut f = rw(&p);
    f.write_all(&vec![0xEE; 1 << 20]).unwrap();
    f.sync_all().unwrap();
    let blocks_before = f.metadata().unwrap().blocks();
    let m = zero_range(f.as_raw_fd(), 65536, 262_144, true).unwrap();
    assert!(matches!(m, ZeroMethod::Punched | ZeroMethod::WroteZeros));
    if m == ZeroMethod::Punched {
        assert!(f.metadata().unwrap().blocks() < blocks_before);
    }
    assert_eq!(f.metadata().unwrap().len(), 1 << 20);
    // Punching past EOF never grows the file, whichever method ran.
    zero_range(f.as_raw_fd(), (1 << 20) - 10, 100, true).unwrap();
    assert_eq!(f.metadata().unwrap().len(), 1 << 20);
    let m2 = zero_range(f.as_raw_fd(), 700_000, 1000, false).unwrap();
    assert!(matches!(m2, ZeroMethod::ZeroRange | ZeroMethod::WroteZeros));
    assert_eq!(
        zero_range(f.as_raw_fd(), 0, 0, false),
        Ok(ZeroMethod::Nothing)
    );
    let mut out = Vec::new();
    File::open(&p).unwrap().read_to_end(&mut out).unwrap();
    for (i, &b) in out.iter().enumerate() {
        let zero = (65536..65536 + 262_144).contains(&i)
            || (700_000..701_000).contains(&i)
            || i >= (1 << 20) - 10;
        assert_eq!(b == 0, zero, "byte {i}");
    }
    std::fs::remove_file(p).unwrap();
}

#[test]
fn is_zero_finds_any_set_byte() {
    let mut v = vec![0u8; 1000];
    for start in 0..9 {
        assert!(is_zero(&v[start..]));
    }
    for i in 0..v.len() {
        v[i] = 1;
        assert!(!is_zero(&v), "{i}");
        assert!(is_zero(&v[i + 1..]));
        v[i] = 0;
    }
    assert!(is_zero(&[]));
}

#[test]
fn aligned_alloc() {
    assert!(aligned_layout(10, 3).is_none());
    assert!(aligned_layout(usize::MAX, 4096).is_none());
    for align in [1usize, 8, 512, 4096, 1 << 16] {
        let l = aligned_layout(12345, align).unwrap();
        // SAFETY: layout from aligned_layout; freed right after with the same layout.
        unsafe {
            let p = alloc_aligned(l);
            assert!(!p.is_null());
            assert_eq!(p as usize % align, 0);
            assert!(std::slice::from_raw_parts(p, 12345).iter().all(|&b| b == 0));
            free_aligned(p, l);
        }
    }
}

#[test]
fn read_nowait_reads_cached_bytes_and_stops_at_eof() {
    let p = temp("nowait");
    let data = pattern(200_000);
    let mut f = rw(&p);
    f.write_all(&data).unwrap(); // just written: in the page cache
    let fd = f.as_raw_fd();
    let mut buf = vec![0u8; 100_000];
    // A cached read either succeeds whole or (a kernel without RWF_NOWAIT) says "not
    // without waiting"; it never returns other bytes.
    if let Some(n) = read_nowait(fd, &mut buf, 50_000).unwrap() {
        assert_eq!(n, 100_000);
        assert_eq!(&buf[..], &data[50_000..150_000]);
        // Short only at the end of the file.
        assert_eq!(read_nowait(fd, &mut buf, 150_000).unwrap(), Some(50_000));
        assert_eq!(&buf[..50_000], &data[150_000..]);
        assert_eq!(read_nowait(fd, &mut buf, 300_000).unwrap(), Some(0));
    }
    // A bad descriptor is an error, not "would block" (-1: a closed number could be
    // reused by a test running beside this one).
    drop(f);
    let err = read_nowait(-1, &mut buf, 0).unwrap_err();
    assert!(matches!(err, ChunkError::Sys { syscall: "preadv2", .. }));
    std::fs::remove_file(&p).unwrap();
}
