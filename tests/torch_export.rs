//! `mdc export torch`: the generated module and training script of every shipped model are
//! reviewed snapshots and valid Python (`python3 -m py_compile`; PyTorch itself is not needed
//! here: scripts/torch_check.sh runs the numerical checks), the built-in digits come back
//! byte for byte from the IDX files `--train` writes, and names PyTorch keeps are refused.

use std::path::{Path, PathBuf};
use std::process::Command;

use mdc::data::{DataSource, Dataset};
use mdc::torch::{module_source, train_script, DataFile, TrainScript};
use mdc::train::{Origin, Recipe, TrainConfig};

fn shipped() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    v.sort();
    assert!(v.len() >= 4, "{v:?}");
    v
}

/// The model loaded as the CLI loads it, named by its path relative to the repository.
fn model(path: &Path) -> mdc::model::Model {
    let rel = path.strip_prefix(env!("CARGO_MANIFEST_DIR")).unwrap();
    let bytes = std::fs::read(path).unwrap();
    mdc::model::from_bytes(rel, &bytes).unwrap()
}

fn script_for(m: &mdc::model::Model) -> String {
    let mut recipe = Recipe::new(TrainConfig::default(), Origin::Default);
    if let Some(t) = &m.train {
        recipe.apply_table(t, Origin::ModelFile).unwrap();
    }
    let data = DataFile::Idx {
        images: "builtin-digits-idx3-ubyte".into(),
        labels: Some("builtin-labels-idx1-ubyte".into()),
    };
    train_script(&TrainScript {
        model: m,
        module_file: "model.py".into(),
        config: recipe.config,
        data,
        class_names: vec![],
    })
}

/// The generated code of every model is reviewed: a change to an op's PyTorch code, the naming
/// or the recipe shows up as a diff. The script's body is the same for every model, so beyond
/// models/unet.toml only its generated head is kept.
#[test]
fn every_shipped_model_exports_reviewed_python() {
    for path in shipped() {
        let m = model(&path);
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        insta::assert_snapshot!(format!("torch_module_{stem}"), module_source(&m).unwrap());
        let script = script_for(&m);
        let text = if stem == "unet" {
            script
        } else {
            script[..script.find("\nimport argparse").expect("the body starts with its imports")].to_string()
        };
        insta::assert_snapshot!(format!("torch_train_{stem}"), text);
    }
}

/// The module: one attribute per block, named as in the model file with its line; the state_dict
/// keys are written in mdc's order; forward takes y only for a conditional model.
#[test]
fn the_module_names_layers_after_the_blocks_and_parameters_as_mdc() {
    let m = model(&shipped().into_iter().find(|p| p.ends_with("unet-cond.toml")).unwrap());
    let src = module_source(&m).unwrap();
    assert!(src.contains("class MiniUnetCond(nn.Module):"), "{src}");
    assert!(src.contains("        self.enc1 = nn.Module()\n        self.enc1.conv1 = nn.Conv2d(16, 32, 3, stride=1, padding=1)"));
    assert!(src.contains("self.label = nn.Embedding(11, 128)"));
    assert!(src.contains("# enc3     = { op = \"resblock\""), "the TOML line above the block");
    assert!(src.contains("    def forward(self, x, t, y=None):"));
    for (name, _) in m.graph.params() {
        assert!(src.contains(&format!("    (\"{name}\", (")), "{name} missing from PARAMETERS");
    }
    let plain = model(&shipped().into_iter().find(|p| p.ends_with("unet.toml")).unwrap());
    assert!(module_source(&plain).unwrap().contains("    def forward(self, x, t):"));
}

/// Every generated file compiles (py_compile needs python3, not PyTorch).
#[test]
fn generated_python_compiles() {
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for path in shipped() {
        let m = model(&path);
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        for (kind, text) in [("model", module_source(&m).unwrap()), ("train", script_for(&m))] {
            let f = dir.path().join(format!("{stem}_{kind}.py"));
            std::fs::write(&f, text).unwrap();
            files.push(f);
        }
    }
    let out = Command::new("python3").args(["-m", "py_compile"]).args(&files).output();
    let out = match out {
        Ok(o) => o,
        Err(e) if std::env::var_os("CI").is_none() => return eprintln!("NOTICE: skipping py_compile: {e}"),
        Err(e) => panic!("python3 is required in CI: {e}"),
    };
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// `--train` writes the module, the script and the built-in digits as IDX files that decode to
/// exactly the images and labels `mdc train` trains on.
#[test]
fn export_with_train_writes_the_builtin_digits_as_idx() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("model.py");
    let run = Command::new(env!("CARGO_BIN_EXE_mdc"))
        .args(["export", "torch", "models/unet-cond.toml", "--train", "-o"])
        .arg(&out)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let script = std::fs::read_to_string(dir.path().join("train.py")).unwrap();
    assert!(script.contains("MODEL_PY = \"model.py\"") && script.contains("LABEL_DROP = 0.8"));
    let written = Dataset::load_idx(&dir.path().join("builtin-digits-idx3-ubyte")).unwrap();
    let builtin = Dataset::load(&DataSource::Builtin, (28, 28)).unwrap();
    assert_eq!(written.images, builtin.images);
    let labels = mdc::data::Labels::load_idx(&dir.path().join("builtin-labels-idx1-ubyte")).unwrap();
    assert_eq!(labels.values, builtin.labels.unwrap().values);
}

/// A block named like an nn.Module attribute cannot keep mdc's parameter names: a clear error.
#[test]
fn a_block_named_like_a_module_method_is_refused() {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("models/unet.toml"))
        .unwrap()
        .replace("init     = {", "train = {")
        .replace("in = \"init\"", "in = \"train\"");
    let m = mdc::model::from_bytes(Path::new("train-block.toml"), text.as_bytes()).unwrap();
    let err = module_source(&m).unwrap_err().to_string();
    assert!(
        err.contains("block `train`") && err.contains("torch.nn.Module") && err.contains("rename"),
        "{err}"
    );
    let run = Command::new(env!("CARGO_BIN_EXE_mdc"))
        .args(["export", "torch", "models/unet.toml", "--weights", "x.safetensors", "-o", "/dev/null"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(2), "a usage error");
    assert!(String::from_utf8_lossy(&run.stderr).contains("without weights"));
}
