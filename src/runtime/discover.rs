//! Finding and loading the onnxruntime shared library at run time.
//!
//! mdc links onnxruntime dynamically so that commands which do not run ONNX models work without
//! it. The library is taken from `ORT_DYLIB_PATH`, else from the Python `onnxruntime` package
//! (`<package>/capi/libonnxruntime.so*`). Nothing here panics: ort itself panics when its API is
//! used before a library is loaded, so every ort call in mdc goes through [`environment`] first.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The onnxruntime release mdc is built and tested against (ort's `api-30` needs 1.30 or newer).
pub const ONNXRUNTIME_VERSION: &str = "1.31.1";

/// How to get onnxruntime, appended to every "not found" message.
pub fn install_hint() -> String {
    format!(
        "install onnxruntime with `pip install onnxruntime=={ONNXRUNTIME_VERSION}` (mdc then finds it through python3), \
         or set ORT_DYLIB_PATH to the path of libonnxruntime.so (version 1.30 or newer)"
    )
}

/// Where the onnxruntime library is, or a message saying why it was not found and how to get it.
pub fn library_path() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!("ORT_DYLIB_PATH is set to {}, which is not a file; {}", p.display(), install_hint()))
        };
    }
    let package = python_package_dir().ok_or_else(|| {
        format!(
            "onnxruntime not found: ORT_DYLIB_PATH is not set and python3 has no `onnxruntime` package; {}",
            install_hint()
        )
    })?;
    let capi = package.join("capi");
    library_in(&capi).ok_or_else(|| {
        format!(
            "the Python onnxruntime package at {} has no onnxruntime library in capi/; {}",
            package.display(),
            install_hint()
        )
    })
}

/// The directory of the Python `onnxruntime` package, asking python3 (then python).
fn python_package_dir() -> Option<PathBuf> {
    const SCRIPT: &str = "import importlib.util as u; s = u.find_spec('onnxruntime'); \
                          print(s.submodule_search_locations[0] if s else '')";
    for python in ["python3", "python"] {
        let Ok(out) = std::process::Command::new(python).args(["-c", SCRIPT]).output() else { continue };
        let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if out.status.success() && !dir.is_empty() {
            return Some(PathBuf::from(dir));
        }
    }
    None
}

/// The main onnxruntime library in `dir` (not its provider plug-ins), preferring the fully
/// versioned file name (`libonnxruntime.so.1.31.1` over `libonnxruntime.so`).
fn library_in(dir: &Path) -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.starts_with("libonnxruntime.so")
                || (name.starts_with("libonnxruntime.") && name.ends_with(".dylib"))
                || name == "onnxruntime.dll"
        })
        .collect();
    found.sort_by_key(|p| p.as_os_str().len());
    found.pop()
}

struct Loaded {
    env: ort::environment::Environment,
    library: PathBuf,
}

static ENVIRONMENT: OnceLock<Result<Loaded, String>> = OnceLock::new();

/// The process-wide onnxruntime environment, loading the library on first use.
pub fn environment() -> anyhow::Result<&'static ort::environment::Environment> {
    Ok(&loaded()?.env)
}

/// Path of the onnxruntime library in use (loads it if needed).
pub fn loaded_library() -> anyhow::Result<&'static Path> {
    Ok(&loaded()?.library)
}

fn loaded() -> anyhow::Result<&'static Loaded> {
    ENVIRONMENT.get_or_init(load).as_ref().map_err(|e| anyhow::anyhow!("{e}"))
}

fn load() -> Result<Loaded, String> {
    let library = library_path()?;
    // Second guard: a library that loads but misbehaves must not take the process down with a panic.
    let built = std::panic::catch_unwind(|| -> Result<ort::environment::Environment, String> {
        let builder = ort::init_from(&library).map_err(|e| e.to_string())?;
        builder.with_name("mdc").build().map_err(|e| e.to_string())
    });
    let env = match built {
        Ok(Ok(env)) => env,
        Ok(Err(e)) => {
            return Err(format!(
                "cannot load onnxruntime from {}: {e}; {}",
                library.display(),
                install_hint()
            ))
        }
        Err(_) => {
            return Err(format!(
                "onnxruntime at {} failed while starting (it may be too old or broken); {}",
                library.display(),
                install_hint()
            ))
        }
    };
    Ok(Loaded { env, library })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_versioned_library_not_providers() {
        let dir = tempfile::tempdir().unwrap();
        for f in ["libonnxruntime_providers_shared.so", "libonnxruntime.so.1.31.1", "__init__.py"] {
            std::fs::write(dir.path().join(f), b"").unwrap();
        }
        assert_eq!(library_in(dir.path()).unwrap().file_name().unwrap(), "libonnxruntime.so.1.31.1");
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(library_in(empty.path()), None);
    }
}
