//! Builds a Rust Lambda crate into the zip Lambda runs: an executable named
//! `bootstrap` for provided.al2023, as a static musl binary, in a reproducible
//! archive. A hash of the sources decides whether anything needs building.

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::package;

/// Bumped whenever the way code is built changes, so old artifacts are not reused.
const RECIPE: &str = "stackctl-lambda-build-1";

#[derive(Debug, Clone)]
pub struct Artifact {
    pub zip_path: PathBuf,
    pub zip_size: u64,
    pub bootstrap_size: u64,
    /// base64(SHA-256(zip)): what Lambda reports as CodeSha256.
    pub code_sha256: String,
    /// Whether cargo ran (false when the artifact for these sources existed).
    pub built: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BuildError(pub String);

fn fail(message: impl Into<String>) -> BuildError {
    BuildError(message.into())
}

pub fn target_triple(arch: &str) -> Result<&'static str, BuildError> {
    match arch {
        "x86_64" => Ok("x86_64-unknown-linux-musl"),
        "arm64" => Ok("aarch64-unknown-linux-musl"),
        other => Err(fail(format!(
            "unknown architecture `{other}` (x86_64 or arm64)"
        ))),
    }
}

/// The directory with the Cargo.lock that governs `crate_dir`.
fn workspace_root(crate_dir: &Path) -> Result<PathBuf, BuildError> {
    let start = crate_dir
        .canonicalize()
        .map_err(|e| fail(format!("cannot open {}: {e}", crate_dir.display())))?;
    if !start.join("Cargo.toml").is_file() {
        return Err(fail(format!(
            "{} is not a Rust crate (no Cargo.toml)",
            crate_dir.display()
        )));
    }
    start
        .ancestors()
        .find(|d| d.join("Cargo.lock").is_file())
        .map(Path::to_path_buf)
        .ok_or_else(|| {
            fail(format!(
                "no Cargo.lock above {}; run `cargo generate-lockfile` there",
                crate_dir.display()
            ))
        })
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let name = entry.file_name();
        if name == "target" || name.to_string_lossy().starts_with('.') {
            continue;
        }
        if entry.file_type()?.is_dir() {
            files(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

/// SHA-256 over what decides the binary: the crate's files, the workspace's
/// Cargo.toml and Cargo.lock, the target and the build recipe. File times do
/// not count, only contents.
pub fn source_hash(crate_dir: &Path, arch: &str) -> Result<String, BuildError> {
    let root = workspace_root(crate_dir)?;
    let crate_dir = crate_dir.canonicalize().map_err(|e| fail(e.to_string()))?;
    let mut paths = Vec::new();
    files(&crate_dir, &mut paths)
        .map_err(|e| fail(format!("cannot read {}: {e}", crate_dir.display())))?;
    paths.sort();
    let mut h = Sha256::new();
    h.update(RECIPE.as_bytes());
    h.update(target_triple(arch)?.as_bytes());
    for p in paths
        .iter()
        .chain([root.join("Cargo.toml"), root.join("Cargo.lock")].iter())
    {
        let rel = p.strip_prefix(&root).unwrap_or(p);
        let data =
            std::fs::read(p).map_err(|e| fail(format!("cannot read {}: {e}", p.display())))?;
        h.update(rel.to_string_lossy().as_bytes());
        h.update([0]);
        h.update((data.len() as u64).to_le_bytes());
        h.update(&data);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Where builds and artifacts go: a directory of the workspace's target dir, so
/// a build run from inside `cargo test` does not wait on the outer cargo's lock.
fn build_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("stackctl-lambda")
}

/// The environment of the nested cargo: only what finds the toolchain and the
/// C compiler. Whatever else the caller has (cargo's own variables when run
/// from `cargo test`, for one) would make cargo see changed inputs and rebuild
/// the SDK from scratch, and could make the bytes differ. The RUSTUP_*
/// variables stay: without the caller's RUSTUP_TOOLCHAIN, rustup resolves the
/// toolchain afresh and may pick, or try to download, another one.
fn build_env(
    vars: impl Iterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
) -> Vec<(String, std::ffi::OsString)> {
    vars.filter_map(|(k, v)| Some((k.into_string().ok()?, v)))
        .filter(|(k, _)| {
            ["PATH", "HOME", "CARGO_HOME", "TMPDIR"].contains(&k.as_str())
                || k.starts_with("RUSTUP_")
                || k.starts_with("CC_")
                || k.starts_with("AR_")
        })
        .collect()
}

/// The zip for these sources: reused when it was built before, else built.
pub fn build(crate_dir: &Path, arch: &str) -> Result<Artifact, BuildError> {
    let hash = source_hash(crate_dir, arch)?;
    let root = workspace_root(crate_dir)?;
    let dir = build_dir(&root);
    let zip_path = dir.join("artifacts").join(format!("{hash}.zip"));
    if let Ok(bytes) = std::fs::read(&zip_path) {
        return Ok(Artifact {
            zip_size: bytes.len() as u64,
            bootstrap_size: 0,
            code_sha256: package::code_sha256(&bytes),
            zip_path,
            built: false,
        });
    }
    let triple = target_triple(arch)?;
    let crate_dir = crate_dir.canonicalize().map_err(|e| fail(e.to_string()))?;
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    if arch == "arm64" {
        // Cross-linking for aarch64 needs a linker: zig through cargo-zigbuild.
        let has_zigbuild = Command::new("cargo-zigbuild")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !has_zigbuild {
            return Err(fail("building for arm64 needs cargo-zigbuild and zig: `cargo install cargo-zigbuild` and `pip install ziglang`, or use architectures: [x86_64]"));
        }
        cmd.arg("zigbuild");
    } else {
        cmd.arg("build");
    }
    eprintln!("building {} for {triple}...", crate_dir.display());
    let out = cmd
        .args([
            "--release",
            "--locked",
            "--target",
            triple,
            "--bin",
            "bootstrap",
            "--manifest-path",
        ])
        .arg(crate_dir.join("Cargo.toml"))
        // From the workspace root, so its .cargo/config.toml (the musl C
        // compiler) applies wherever stackctl was started.
        .current_dir(&root)
        .env_clear()
        .envs(build_env(std::env::vars_os()))
        .env("CARGO_TARGET_DIR", &dir)
        .output()
        .map_err(|e| fail(format!("cannot run cargo: {e}")))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let hint = if stderr.contains("target may not be installed")
            || stderr.contains("can't find crate for `std`")
        {
            format!("\nthe Rust target is missing: run `rustup target add {triple}` (scripts/setup does)")
        } else if stderr.contains("musl-gcc") {
            "\nthe musl C compiler is missing: `apt-get install musl-tools` (scripts/setup does)"
                .to_string()
        } else {
            String::new()
        };
        let tail: Vec<&str> = stderr
            .lines()
            .rev()
            .take(30)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        return Err(fail(format!(
            "cargo build of {} failed:\n{}{hint}",
            crate_dir.display(),
            tail.join("\n")
        )));
    }
    let binary = dir.join(triple).join("release").join("bootstrap");
    let bytes = std::fs::read(&binary)
        .map_err(|e| fail(format!("cannot read {}: {e}", binary.display())))?;
    let zip = package::zip(&mut [package::Entry {
        name: "bootstrap",
        data: &bytes,
        mode: 0o755,
    }])
    .map_err(|e| fail(e.to_string()))?;
    std::fs::create_dir_all(zip_path.parent().unwrap_or(&dir)).map_err(|e| fail(e.to_string()))?;
    let tmp = zip_path.with_extension("zip.tmp");
    std::fs::write(&tmp, &zip)
        .and_then(|()| std::fs::rename(&tmp, &zip_path))
        .map_err(|e| fail(e.to_string()))?;
    Ok(Artifact {
        zip_size: zip.len() as u64,
        bootstrap_size: bytes.len() as u64,
        code_sha256: package::code_sha256(&zip),
        zip_path,
        built: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_cargo_keeps_the_callers_toolchain_and_drops_cargos_variables() {
        let vars = [
            ("RUSTUP_TOOLCHAIN", "1.95.0-x86_64-unknown-linux-gnu"),
            ("RUSTUP_HOME", "/root/.rustup"),
            ("PATH", "/usr/bin"),
            ("CC_x86_64_unknown_linux_musl", "musl-gcc"),
            ("CARGO_PKG_NAME", "stackctl"),
            ("CARGO_MANIFEST_DIR", "/src"),
            ("RUSTFLAGS", "-Cdebuginfo=2"),
        ]
        .map(|(k, v)| (k.into(), v.into()));
        let mut kept: Vec<String> = build_env(vars.into_iter())
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        kept.sort();
        assert_eq!(
            kept,
            [
                "CC_x86_64_unknown_linux_musl",
                "PATH",
                "RUSTUP_HOME",
                "RUSTUP_TOOLCHAIN"
            ]
        );
    }

    fn scratch_crate() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("Cargo.lock"), "# lock\n").unwrap();
        std::fs::write(dir.path().join("Cargo.toml"), "[package]\nname = \"f\"\n").unwrap();
        std::fs::create_dir_all(dir.path().join("src")).unwrap();
        std::fs::write(dir.path().join("src/main.rs"), "fn main() {}\n").unwrap();
        dir
    }

    #[test]
    fn source_hash_follows_contents_not_times() {
        let dir = scratch_crate();
        let a = source_hash(dir.path(), "x86_64").unwrap();
        // Same bytes written again: a new mtime, the same hash.
        std::fs::write(dir.path().join("src/main.rs"), "fn main() {}\n").unwrap();
        assert_eq!(source_hash(dir.path(), "x86_64").unwrap(), a);
        std::fs::write(
            dir.path().join("src/main.rs"),
            "fn main() { println!(); }\n",
        )
        .unwrap();
        let b = source_hash(dir.path(), "x86_64").unwrap();
        assert_ne!(a, b);
        assert_ne!(
            source_hash(dir.path(), "arm64").unwrap(),
            b,
            "the target is part of the hash"
        );
        // Build output inside the crate does not count.
        std::fs::create_dir_all(dir.path().join("target")).unwrap();
        std::fs::write(dir.path().join("target/junk"), "x").unwrap();
        assert_eq!(source_hash(dir.path(), "x86_64").unwrap(), b);
    }

    #[test]
    fn a_directory_that_is_not_a_crate_is_explained() {
        let dir = tempfile::tempdir().unwrap();
        assert!(source_hash(dir.path(), "x86_64")
            .unwrap_err()
            .0
            .contains("is not a Rust crate"));
        assert!(target_triple("sparc").is_err());
    }
}
