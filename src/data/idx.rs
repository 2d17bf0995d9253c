//! The IDX format MNIST and Fashion-MNIST ship in: big-endian u32 magic (0, 0, type 0x08 = u8,
//! number of dimensions), the dimensions as big-endian u32, then the bytes. Images are [N, H, W].

use std::io::Read;

use ndarray::Array4;

use super::{scale_pixel, DataError};

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const TYPE_U8: u8 = 0x08;

/// The most a gzipped IDX file may decompress to (a small file may expand without bound).
const MAX_DECOMPRESSED: u64 = 4 << 30;

/// Parses gzipped or raw IDX image bytes into [N, 1, H, W] in [-1, 1]; `origin` names the file.
pub fn parse(bytes: &[u8], origin: &str) -> Result<Array4<f32>, DataError> {
    parse_limited(bytes, origin, MAX_DECOMPRESSED)
}

/// [`parse`] with gzip data allowed to decompress to at most `limit` bytes.
fn parse_limited(bytes: &[u8], origin: &str, limit: u64) -> Result<Array4<f32>, DataError> {
    let raw;
    let data: &[u8] = if bytes.starts_with(&GZIP_MAGIC) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(bytes).take(limit + 1).read_to_end(&mut out).map_err(|e| {
            DataError::invalid(origin, format!("the gzip stream is damaged or truncated ({e})"))
        })?;
        if out.len() as u64 > limit {
            return Err(DataError::invalid(
                origin,
                format!("decompresses to more than {}; not an IDX image file", describe_bytes(limit)),
            ));
        }
        raw = out;
        &raw
    } else {
        bytes
    };
    if data.len() < 4 {
        return Err(DataError::invalid(
            origin,
            format!("too short for an IDX file ({} bytes; the header alone is 16)", data.len()),
        ));
    }
    if data[0] != 0 || data[1] != 0 {
        return Err(DataError::invalid(
            origin,
            format!(
                "not an IDX file: magic starts {:02x} {:02x}, expected 00 00 (an IDX image file starts 00 00 08 03)",
                data[0], data[1]
            ),
        ));
    }
    if data[2] != TYPE_U8 {
        return Err(DataError::invalid(
            origin,
            format!("IDX element type 0x{:02x} is not supported; expected 0x08 (unsigned bytes)", data[2]),
        ));
    }
    let ndims = data[3] as usize;
    if ndims != 3 {
        let what = if ndims == 1 { " (this looks like a label file)" } else { "" };
        return Err(DataError::invalid(
            origin,
            format!(
                "expected an IDX image file with 3 dimensions (count, height, width), found {ndims}{what}; magic 00 00 08 03"
            ),
        ));
    }
    let header = 4 + 4 * ndims;
    if data.len() < header {
        return Err(DataError::invalid(
            origin,
            format!("truncated header: {} bytes, expected {header}", data.len()),
        ));
    }
    let dim = |i: usize| u32::from_be_bytes(data[4 + 4 * i..8 + 4 * i].try_into().expect("4 bytes")) as usize;
    let (n, h, w) = (dim(0), dim(1), dim(2));
    if n == 0 || h == 0 || w == 0 {
        return Err(DataError::invalid(origin, format!("holds no images (dimensions {n}x{h}x{w})")));
    }
    let expected = n
        .checked_mul(h)
        .and_then(|v| v.checked_mul(w))
        .ok_or_else(|| DataError::invalid(origin, format!("implausible dimensions {n}x{h}x{w}")))?;
    let body = &data[header..];
    if body.len() < expected {
        return Err(DataError::invalid(
            origin,
            format!(
                "truncated: the header promises {n} images of {h}x{w} ({expected} bytes) but only {} bytes follow",
                body.len()
            ),
        ));
    }
    if body.len() > expected {
        return Err(DataError::invalid(
            origin,
            format!(
                "{} unexpected bytes after {n} images of {h}x{w}; the header and the data disagree",
                body.len() - expected
            ),
        ));
    }
    Ok(Array4::from_shape_vec([n, 1, h, w], body.iter().map(|&v| scale_pixel(v)).collect())
        .expect("length checked"))
}

fn describe_bytes(n: u64) -> String {
    if n >= 1 << 30 && n.is_multiple_of(1 << 30) {
        format!("{} GiB", n >> 30)
    } else {
        format!("{n} bytes")
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn gzip_over_the_limit_is_refused() {
        let mut idx = vec![0, 0, 8, 3, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 2];
        idx.extend([0u8; 4]);
        let gz = gzip(&idx);
        assert_eq!(parse_limited(&gz, "x.gz", idx.len() as u64).unwrap().dim(), (1, 1, 2, 2));
        let err = parse_limited(&gz, "x.gz", idx.len() as u64 - 1).unwrap_err().to_string();
        assert!(err.contains("x.gz") && err.contains("decompresses to more than 19 bytes"), "{err}");
        assert_eq!(describe_bytes(MAX_DECOMPRESSED), "4 GiB");
    }
}
