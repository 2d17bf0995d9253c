//! The IDX format MNIST and Fashion-MNIST ship in: big-endian u32 magic (0, 0, type 0x08 = u8,
//! number of dimensions), the dimensions as big-endian u32, then the bytes. Images are IDX3
//! [N, H, W]; labels are IDX1 [N], one byte per image.

use std::borrow::Cow;
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

/// Parses gzipped or raw IDX1 label bytes (one unsigned byte per image); `origin` names the file.
pub fn parse_labels(bytes: &[u8], origin: &str) -> Result<Vec<u32>, DataError> {
    let (_, body) = decode(bytes, origin, MAX_DECOMPRESSED, Kind::Labels)?;
    Ok(body.iter().map(|&v| v as u32).collect())
}

/// [`parse`] with gzip data allowed to decompress to at most `limit` bytes.
fn parse_limited(bytes: &[u8], origin: &str, limit: u64) -> Result<Array4<f32>, DataError> {
    let (dims, body) = decode(bytes, origin, limit, Kind::Images)?;
    let [n, h, w] = dims[..] else { unreachable!("decode checked 3 dimensions") };
    Ok(Array4::from_shape_vec([n, 1, h, w], body.iter().map(|&v| scale_pixel(v)).collect())
        .expect("length checked"))
}

/// What an IDX file is expected to hold.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    /// IDX3: count, height, width.
    Images,
    /// IDX1: count.
    Labels,
}

impl Kind {
    fn ndims(self) -> usize {
        match self {
            Kind::Images => 3,
            Kind::Labels => 1,
        }
    }

    fn file(self) -> &'static str {
        match self {
            Kind::Images => "an IDX image file",
            Kind::Labels => "an IDX label file",
        }
    }

    /// "5000 images of 28x28", "5000 labels".
    fn contents(self, dims: &[usize]) -> String {
        match (self, dims) {
            (Kind::Images, [n, h, w]) => format!("{n} images of {h}x{w}"),
            (_, dims) => format!("{} labels", dims[0]),
        }
    }
}

/// The dimensions and body of gzipped or raw IDX bytes of `kind`, their header and length checked.
fn decode<'a>(
    bytes: &'a [u8],
    origin: &str,
    limit: u64,
    kind: Kind,
) -> Result<(Vec<usize>, Cow<'a, [u8]>), DataError> {
    let file = kind.file();
    let ndims_expected = kind.ndims();
    let magic = format!("00 00 08 {ndims_expected:02x}");
    let data: Cow<[u8]> = if bytes.starts_with(&GZIP_MAGIC) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(bytes).take(limit + 1).read_to_end(&mut out).map_err(|e| {
            DataError::invalid(origin, format!("the gzip stream is damaged or truncated ({e})"))
        })?;
        if out.len() as u64 > limit {
            return Err(DataError::invalid(
                origin,
                format!("decompresses to more than {}; not {file}", describe_bytes(limit)),
            ));
        }
        Cow::Owned(out)
    } else {
        Cow::Borrowed(bytes)
    };
    let header = 4 + 4 * ndims_expected;
    if data.len() < 4 {
        return Err(DataError::invalid(
            origin,
            format!("too short for an IDX file ({} bytes; the header alone is {header})", data.len()),
        ));
    }
    if data[0] != 0 || data[1] != 0 {
        return Err(DataError::invalid(
            origin,
            format!(
                "not an IDX file: magic starts {:02x} {:02x}, expected 00 00 ({file} starts {magic})",
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
    if ndims != ndims_expected {
        let problem = match kind {
            Kind::Images => {
                let what = if ndims == 1 { " (this looks like a label file)" } else { "" };
                format!(
                    "expected an IDX image file with 3 dimensions (count, height, width), found {ndims}{what}; magic {magic}"
                )
            }
            Kind::Labels if ndims == 3 => format!(
                "is an IDX3 image file (3 dimensions: count, height, width), not labels; expected an IDX1 label file (magic {magic}: a count, then one byte per image)"
            ),
            Kind::Labels => format!(
                "expected an IDX1 label file with 1 dimension (count), found {ndims}; magic {magic}"
            ),
        };
        return Err(DataError::invalid(origin, problem));
    }
    if data.len() < header {
        return Err(DataError::invalid(
            origin,
            format!("truncated header: {} bytes, expected {header}", data.len()),
        ));
    }
    let dims: Vec<usize> = (0..ndims)
        .map(|i| u32::from_be_bytes(data[4 + 4 * i..8 + 4 * i].try_into().expect("4 bytes")) as usize)
        .collect();
    let contents = kind.contents(&dims);
    if dims.contains(&0) {
        let shown = dims.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("x");
        let what = if kind == Kind::Images { "images" } else { "labels" };
        return Err(DataError::invalid(origin, format!("holds no {what} (dimensions {shown})")));
    }
    let expected = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| DataError::invalid(origin, format!("implausible dimensions: {contents}")))?;
    let found = data.len() - header;
    if found < expected {
        return Err(DataError::invalid(
            origin,
            format!(
                "truncated: the header promises {contents} ({expected} bytes) but only {found} bytes follow"
            ),
        ));
    }
    if found > expected {
        return Err(DataError::invalid(
            origin,
            format!(
                "{} unexpected bytes after {contents}; the header and the data disagree",
                found - expected
            ),
        ));
    }
    let body = match data {
        Cow::Borrowed(b) => Cow::Borrowed(&b[header..]),
        Cow::Owned(mut v) => {
            v.drain(..header);
            Cow::Owned(v)
        }
    };
    Ok((dims, body))
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
