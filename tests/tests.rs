//! One integration-test binary (as ripgrep's tests/tests.rs): one link instead of one per file.
//! Every tests/*.rs file must be declared here; `every_test_file_is_a_module` checks it.

mod common;
mod onnx_common;

mod architecture;
mod bf16_gemm;
mod bf16_implicit;
mod bf16_kernels;
mod check_cli;
mod check_errors;
mod check_fuzz;
mod check_models;
mod check_props;
mod cond;
mod data_labels;
mod docs_commands;
mod docs_tables;
mod eval_cli;
mod eval_scores;
mod interp_forward;
mod interp_grad;
mod interp_models;
mod onnx_check;
mod onnx_export;
mod onnx_ops;
mod onnx_parity;
mod onnx_runtime;
mod onnx_sampling;
mod torch_export;
mod train_checkpoint;
mod train_cli;
mod train_data;
mod train_run;
mod train_sampler;
mod train_step_grads;
mod train_step_parity;

#[test]
fn every_test_file_is_a_module() {
    // autotests is off (Cargo.toml), so a file left out here would silently never run.
    let here = include_str!("tests.rs");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else { continue };
        if path.extension().is_some_and(|e| e == "rs") && stem != "tests" {
            assert!(
                here.contains(&format!("\nmod {stem};")),
                "tests/{stem}.rs is not declared in tests/tests.rs"
            );
        }
    }
}
