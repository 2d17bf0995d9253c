//! safetensors files written byte for byte the same on every run.
//!
//! `safetensors::serialize` writes the `__metadata__` map in `HashMap` iteration order, which
//! is random per process, so the same content gave different bytes from run to run. Here the
//! header is written in a fixed order, and the file is otherwise what the crate writes (its
//! reader and Python's `safetensors` read it):
//!
//! - 8 bytes: the header's length N, little-endian;
//! - N bytes: the JSON header, compact, padded with spaces to a multiple of 8: first
//!   `"__metadata__"` (left out when there is none) with its keys sorted, then one entry
//!   `{"dtype","shape","data_offsets"}` per tensor in the order of the data;
//! - the tensors' raw bytes, in the crate's order: by descending dtype alignment, then by name.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use safetensors::tensor::{TensorInfo, TensorView};
use serde::ser::{Serialize, SerializeMap, Serializer};

/// The largest header the crate's reader accepts.
const MAX_HEADER: usize = 100_000_000;

/// The bytes of a safetensors file of `tensors` (unique names) with string `metadata`, the same
/// for the same content whatever order the tensors and the map's keys come in.
pub fn safetensors_bytes(
    mut tensors: Vec<(String, TensorView<'_>)>,
    metadata: Option<&HashMap<String, String>>,
) -> Vec<u8> {
    tensors.sort_by(|(ln, l), (rn, r)| r.dtype().cmp(&l.dtype()).then_with(|| ln.cmp(rn)));
    let mut names = BTreeSet::new();
    let mut offset = 0;
    let mut entries = Vec::with_capacity(tensors.len());
    for (name, t) in &tensors {
        assert!(names.insert(name.as_str()), "tensor `{name}` named twice");
        let end = offset + t.data().len();
        entries.push((
            name.as_str(),
            TensorInfo { dtype: t.dtype(), shape: t.shape().to_vec(), data_offsets: (offset, end) },
        ));
        offset = end;
    }
    let header = Header {
        metadata: metadata.map(|m| m.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()),
        tensors: entries,
    };
    let mut text = serde_json::to_vec(&header).expect("a map of strings and tensor entries serialises");
    text.resize(text.len().next_multiple_of(8), b' ');
    assert!(text.len() <= MAX_HEADER, "a safetensors header of {} bytes is too large to read", text.len());
    let mut out = Vec::with_capacity(8 + text.len() + offset);
    out.extend((text.len() as u64).to_le_bytes());
    out.extend(text);
    for (_, t) in &tensors {
        out.extend_from_slice(t.data());
    }
    out
}

/// The JSON header, its keys in the order of [`safetensors_bytes`].
struct Header<'a> {
    metadata: Option<BTreeMap<&'a str, &'a str>>,
    tensors: Vec<(&'a str, TensorInfo)>,
}

impl Serialize for Header<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map =
            serializer.serialize_map(Some(self.tensors.len() + usize::from(self.metadata.is_some())))?;
        if let Some(m) = &self.metadata {
            map.serialize_entry("__metadata__", m)?;
        }
        for (name, info) in &self.tensors {
            map.serialize_entry(name, info)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use safetensors::{Dtype, SafeTensors};

    fn view<'a>(dtype: Dtype, shape: &[usize], data: &'a [u8]) -> TensorView<'a> {
        TensorView::new(dtype, shape.to_vec(), data).unwrap()
    }

    fn meta(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn the_same_content_in_any_order_gives_the_same_bytes() {
        let (a, b, c) = ([1u8; 16], [2u8; 8], [3u8; 24]);
        let keys: Vec<(String, String)> =
            (0..40).map(|i| (format!("key{i:02}"), format!("value \"{i}\""))).collect();
        let forward: HashMap<String, String> = keys.iter().cloned().collect();
        let mut backward = HashMap::new();
        for (k, v) in keys.iter().rev() {
            backward.insert(k.clone(), v.clone());
        }
        let one = safetensors_bytes(
            vec![
                ("w".into(), view(Dtype::F32, &[2, 2], &a)),
                ("labels".into(), view(Dtype::I64, &[1], &b)),
                ("b".into(), view(Dtype::F32, &[6], &c)),
            ],
            Some(&forward),
        );
        let two = safetensors_bytes(
            vec![
                ("b".into(), view(Dtype::F32, &[6], &c)),
                ("w".into(), view(Dtype::F32, &[2, 2], &a)),
                ("labels".into(), view(Dtype::I64, &[1], &b)),
            ],
            Some(&backward),
        );
        assert_eq!(one, two);

        let st = SafeTensors::deserialize(&one).unwrap();
        assert_eq!(st.tensor("w").unwrap().data(), &a);
        assert_eq!(st.tensor("b").unwrap().shape(), &[6]);
        assert_eq!(st.tensor("labels").unwrap().dtype(), Dtype::I64);
        let (n, header) = SafeTensors::read_metadata(&one).unwrap();
        assert_eq!(header.metadata().as_ref(), Some(&forward));
        assert_eq!(n % 8, 0);
        // The crate's data order (I64 before F32, then by name), keys sorted in the header.
        assert_eq!(header.offset_keys(), ["labels", "b", "w"]);
        let text = std::str::from_utf8(&one[8..8 + n]).unwrap();
        let positions: Vec<usize> =
            keys.iter().map(|(k, _)| text.find(&format!("\"{k}\"")).unwrap()).collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{text}");
        assert!(text.starts_with("{\"__metadata__\":{\"key00\":\"value \\\"0\\\"\","), "{text}");
    }

    #[test]
    fn matches_the_crate_where_its_order_is_fixed() {
        let (a, b) = ([7u8; 12], [9u8; 8]);
        let tensors = || {
            vec![("x".to_string(), view(Dtype::F32, &[3], &a)), ("n".to_string(), view(Dtype::I64, &[1], &b))]
        };
        assert_eq!(safetensors_bytes(tensors(), None), safetensors::serialize(tensors(), None).unwrap());
        let m = meta(&[("format", "pt")]);
        assert_eq!(
            safetensors_bytes(tensors(), Some(&m)),
            safetensors::serialize(tensors(), Some(m.clone())).unwrap()
        );
        // The crate writes `{},"__metadata__":{}}` for no tensors and an empty map (a zero length
        // hint makes serde_json close the map at once); this writes valid JSON.
        let empty = meta(&[]);
        let none = safetensors_bytes(Vec::new(), Some(&empty));
        assert_eq!(SafeTensors::read_metadata(&none).unwrap().1.metadata().as_ref(), Some(&empty));
    }

    #[test]
    #[should_panic(expected = "named twice")]
    fn a_name_twice_is_a_bug() {
        let a = [0u8; 4];
        safetensors_bytes(
            vec![("x".into(), view(Dtype::F32, &[1], &a)), ("x".into(), view(Dtype::F32, &[1], &a))],
            None,
        );
    }
}
