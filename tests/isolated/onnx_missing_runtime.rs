//! Without a usable onnxruntime, mdc says how to install it instead of panicking. One test in
//! its own process: it sets ORT_DYLIB_PATH before anything loads onnxruntime.

use mdc::runtime::{discover, Device, OrtDenoiser};

#[test]
fn missing_or_broken_onnxruntime_is_an_error_with_install_advice() {
    let dir = tempfile::tempdir().unwrap();

    std::env::set_var("ORT_DYLIB_PATH", dir.path().join("nonexistent.so"));
    let err = discover::library_path().unwrap_err();
    assert!(err.contains("ORT_DYLIB_PATH") && err.contains("pip install onnxruntime==1.31.1"), "{err}");

    // A file that is not a shared library: loading fails with a message, never a panic.
    let junk = dir.path().join("libonnxruntime.so");
    std::fs::write(&junk, b"not a library").unwrap();
    std::env::set_var("ORT_DYLIB_PATH", &junk);
    let err = discover::environment().err().unwrap().to_string();
    assert!(err.contains("cannot load onnxruntime from") && err.contains("pip install onnxruntime"), "{err}");

    let model = dir.path().join("m.onnx");
    std::fs::write(&model, b"whatever").unwrap();
    let err = OrtDenoiser::open(&model, Device::Cpu).err().unwrap().to_string();
    assert!(err.contains("pip install onnxruntime"), "{err}");
}
