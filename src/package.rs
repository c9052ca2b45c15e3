//! Reproducible zip archives for Lambda code: fixed timestamps and permissions,
//! entries in name order, so the same files always give the same bytes and the
//! same CodeSha256.

use std::io::Write;

use flate2::write::DeflateEncoder;
use flate2::Compression;

/// One file in the archive.
pub struct Entry<'a> {
    pub name: &'a str,
    pub data: &'a [u8],
    /// Unix permission bits; Lambda needs `bootstrap` executable and every file
    /// world-readable.
    pub mode: u32,
}

/// base64(SHA-256(zip)), the way Lambda reports CodeSha256.
pub fn code_sha256(zip: &[u8]) -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(zip))
}

/// 1980-01-01 00:00:00, the earliest time a zip can hold.
const DOS_TIME: u16 = 0;
const DOS_DATE: u16 = (1 << 5) | 1;

pub fn zip(entries: &mut [Entry<'_>]) -> std::io::Result<Vec<u8>> {
    entries.sort_by(|a, b| a.name.cmp(b.name));
    let mut out = Vec::new();
    let mut central = Vec::new();
    for e in entries.iter() {
        let mut enc = DeflateEncoder::new(Vec::new(), Compression::default());
        enc.write_all(e.data)?;
        let compressed = enc.finish()?;
        let crc = crc32fast::hash(e.data);
        let offset = out.len() as u32;
        let name = e.name.as_bytes();
        let (csize, usize_) = (compressed.len() as u32, e.data.len() as u32);

        out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        shared_fields(&mut out, [crc, csize, usize_], name.len() as u16);
        out.extend_from_slice(name);
        out.extend_from_slice(&compressed);

        central.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        central.extend_from_slice(&((3u16 << 8) | 20).to_le_bytes()); // made by: Unix
        shared_fields(&mut central, [crc, csize, usize_], name.len() as u16);
        central.extend_from_slice(&0u16.to_le_bytes()); // comment
        central.extend_from_slice(&0u16.to_le_bytes()); // disk
        central.extend_from_slice(&0u16.to_le_bytes()); // internal attrs
        central.extend_from_slice(&(((0o100000 | e.mode) & 0xffff) << 16).to_le_bytes());
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(name);
    }
    let central_offset = out.len() as u32;
    out.extend_from_slice(&central);
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&(central.len() as u32).to_le_bytes());
    out.extend_from_slice(&central_offset.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    Ok(out)
}

/// The fields a file's local header and its central directory entry share,
/// from "version needed" to the extra field's length (APPNOTE 4.3.7, 4.3.12):
/// deflated, dated 1980-01-01, no extra field.
fn shared_fields(buf: &mut Vec<u8>, [crc, csize, size]: [u32; 3], name_len: u16) {
    for half in [20, 0, 8, DOS_TIME, DOS_DATE] {
        buf.extend_from_slice(&half.to_le_bytes()); // version needed, flags, method
    }
    for word in [crc, csize, size] {
        buf.extend_from_slice(&word.to_le_bytes());
    }
    for half in [name_len, 0] {
        buf.extend_from_slice(&half.to_le_bytes());
    }
}

/// The bytes of one file in a zip (stored or deflated), such as a function's
/// `bootstrap`.
pub fn unzip_file(zip: &[u8], wanted: &str) -> Option<Vec<u8>> {
    use std::io::Read;
    let u16_at = |i: usize| -> Option<usize> {
        Some(u16::from_le_bytes(zip.get(i..i + 2)?.try_into().ok()?) as usize)
    };
    let u32_at = |i: usize| -> Option<usize> {
        Some(u32::from_le_bytes(zip.get(i..i + 4)?.try_into().ok()?) as usize)
    };
    // The end-of-central-directory record is in the last 64 KB + 22 bytes.
    let eocd = (0..zip.len().saturating_sub(21))
        .rev()
        .take(65_557)
        .find(|&i| u32_at(i) == Some(0x0605_4b50))?;
    let (count, mut at) = (u16_at(eocd + 10)?, u32_at(eocd + 16)?);
    for _ in 0..count {
        if u32_at(at)? != 0x0201_4b50 {
            return None;
        }
        let (method, csize) = (u16_at(at + 10)?, u32_at(at + 20)?);
        let (name_len, extra_len, comment_len) =
            (u16_at(at + 28)?, u16_at(at + 30)?, u16_at(at + 32)?);
        let local = u32_at(at + 42)?;
        let name = zip.get(at + 46..at + 46 + name_len)?;
        if name == wanted.as_bytes() {
            let start = local + 30 + u16_at(local + 26)? + u16_at(local + 28)?;
            let data = zip.get(start..start + csize)?;
            return match method {
                0 => Some(data.to_vec()),
                8 => {
                    let mut out = Vec::new();
                    flate2::read::DeflateDecoder::new(data)
                        .read_to_end(&mut out)
                        .ok()?;
                    Some(out)
                }
                _ => None,
            };
        }
        at += 46 + name_len + extra_len + comment_len;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_comes_back_out_of_the_zip() {
        let zip = zip(&mut [
            Entry {
                name: "bootstrap",
                data: b"#!/bin/sh\necho hi\n",
                mode: 0o755,
            },
            Entry {
                name: "lib/data.txt",
                data: b"data",
                mode: 0o644,
            },
        ])
        .unwrap();
        assert_eq!(
            unzip_file(&zip, "bootstrap").unwrap(),
            b"#!/bin/sh\necho hi\n"
        );
        assert_eq!(unzip_file(&zip, "lib/data.txt").unwrap(), b"data");
        assert!(unzip_file(&zip, "missing").is_none());
        assert!(unzip_file(b"not a zip", "bootstrap").is_none());
    }

    /// A function's code hash is the zip's: bytes that changed between
    /// versions of stackctl would redeploy every function on upgrade.
    #[test]
    fn the_archive_bytes_stay_as_released() {
        let zip = zip(&mut [Entry {
            name: "bootstrap",
            data: b"#!/bin/sh\necho hi\n",
            mode: 0o755,
        }])
        .unwrap();
        assert_eq!((zip.len(), crc32fast::hash(&zip)), (136, 1_682_496_514));
    }

    #[test]
    fn same_input_same_bytes_and_order_does_not_matter() {
        let a = zip(&mut [
            Entry {
                name: "bootstrap",
                data: b"#!/bin/sh\necho hi\n",
                mode: 0o755,
            },
            Entry {
                name: "a.txt",
                data: b"x",
                mode: 0o644,
            },
        ])
        .unwrap();
        let b = zip(&mut [
            Entry {
                name: "a.txt",
                data: b"x",
                mode: 0o644,
            },
            Entry {
                name: "bootstrap",
                data: b"#!/bin/sh\necho hi\n",
                mode: 0o755,
            },
        ])
        .unwrap();
        assert_eq!(a, b);
        let c = zip(&mut [Entry {
            name: "bootstrap",
            data: b"#!/bin/sh\necho ho\n",
            mode: 0o755,
        }])
        .unwrap();
        assert_ne!(a, c);
    }

    #[test]
    fn archive_is_readable_by_unzip() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = zip(&mut [Entry {
            name: "bootstrap",
            data: b"#!/bin/sh\necho hi\n",
            mode: 0o755,
        }])
        .unwrap();
        let path = dir.path().join("f.zip");
        std::fs::write(&path, bytes).unwrap();
        let Ok(out) = std::process::Command::new("unzip")
            .arg("-Z")
            .arg(&path)
            .output()
        else {
            return; // no unzip on this machine: the byte-level test above still holds
        };
        let listing = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{listing}");
        assert_contains!(listing, "-rwxr-xr-x");
        assert_contains!(listing, "bootstrap");
        let test = std::process::Command::new("unzip")
            .arg("-t")
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            test.status.success(),
            "{}",
            String::from_utf8_lossy(&test.stdout)
        );
    }
}
