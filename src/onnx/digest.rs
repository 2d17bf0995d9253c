//! An integrity check for exported models: the SHA-256 of the whole model (graph, weights and
//! metadata, as mdc encodes them) is stored in its own metadata entry at export and recomputed on
//! load. Without it, a model file damaged in a copy (a changed byte in a weight or in the
//! recorded noise schedule) loads and runs silently.
//!
//! The digest covers the encoded `ModelProto` with the digest entry itself left out: prost encodes
//! fields in tag order and keeps the order of repeated fields, so decoding the file, removing
//! that entry and encoding again gives back exactly the bytes that were hashed at export.

use prost::Message;
use sha2::{Digest, Sha256};

use crate::onnx_ir::proto::{ModelProto, StringStringEntryProto};

/// The metadata key of the digest.
pub const KEY: &str = "model_sha256";

/// Hex SHA-256 of the encoded model (which must not hold a [`KEY`] entry).
fn sha256_hex(model: &ModelProto) -> String {
    Sha256::digest(model.encode_to_vec()).iter().map(|b| format!("{b:02x}")).collect()
}

/// Adds the digest entry to a freshly exported model.
pub fn seal(model: &mut ModelProto) {
    let digest = sha256_hex(model);
    model.metadata_props.push(StringStringEntryProto { key: Some(KEY.into()), value: Some(digest) });
}

/// What checking a model file's digest found.
#[derive(Debug, Clone, PartialEq)]
pub enum Integrity {
    /// The model is byte for byte what mdc exported.
    Intact,
    /// The file records no digest (exported before mdc stored one, or not by mdc).
    Unrecorded,
    /// The model differs from what was exported.
    Changed { recorded: String, computed: String },
}

/// Decodes `bytes` as an ONNX model and compares it with the digest its metadata records.
/// `Err` when the bytes are not an ONNX model at all.
pub fn check(bytes: &[u8]) -> Result<Integrity, prost::DecodeError> {
    let mut model = ModelProto::decode(bytes)?;
    let Some(at) = model.metadata_props.iter().position(|p| p.key.as_deref() == Some(KEY)) else {
        return Ok(Integrity::Unrecorded);
    };
    let recorded = model.metadata_props.remove(at).value.unwrap_or_default();
    let computed = sha256_hex(&model);
    Ok(if computed == recorded { Integrity::Intact } else { Integrity::Changed { recorded, computed } })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx_ir::proto::GraphProto;

    fn model(name: &str) -> ModelProto {
        ModelProto {
            graph: Some(GraphProto { name: Some(name.into()), ..Default::default() }),
            metadata_props: vec![StringStringEntryProto {
                key: Some("schedule".into()),
                value: Some("linear".into()),
            }],
            ..Default::default()
        }
    }

    #[test]
    fn a_sealed_model_checks_intact_and_any_change_is_found() {
        let mut m = model("unet");
        seal(&mut m);
        assert_eq!(check(&m.encode_to_vec()).unwrap(), Integrity::Intact);

        let mut renamed = m.clone();
        renamed.graph.as_mut().unwrap().name = Some("unes".into());
        assert!(matches!(check(&renamed.encode_to_vec()).unwrap(), Integrity::Changed { .. }));

        let mut metadata_edit = m.clone();
        metadata_edit.metadata_props[0].value = Some("cosine".into());
        assert!(matches!(check(&metadata_edit.encode_to_vec()).unwrap(), Integrity::Changed { .. }));

        assert_eq!(check(&model("unet").encode_to_vec()).unwrap(), Integrity::Unrecorded);
        assert!(check(b"\xff\xff\xff not protobuf").is_err());
    }
}
