//! Builds a Rust Lambda crate into the zip Lambda runs: an executable named
//! `bootstrap` for provided.al2023, as a static musl binary, in a reproducible
//! archive. A hash of the sources decides whether anything needs building.

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::events::{Event, Events};
use crate::package;

/// Bumped whenever the way code is built changes, so old artifacts are not reused.
const RECIPE: &str = "stackctl-lambda-build-1";

#[derive(Debug, Clone)]
pub struct Artifact {
    /// Where the zip is cached; `zip` holds its bytes, so a caller never reads
    /// the cache again (another build may replace, or a clean remove, it).
    pub zip_path: PathBuf,
    pub zip: Vec<u8>,
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

fn read_manifest(path: &Path) -> Result<toml::Table, BuildError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| fail(format!("cannot read {}: {e}", path.display())))?;
    text.parse::<toml::Table>()
        .map_err(|e| fail(format!("{} is not valid TOML: {e}", path.display())))
}

/// The crates a manifest depends on by path (directly, through
/// `workspace = true`, or through the workspace's `[patch]`): their sources
/// are part of the build as much as the crate's own.
fn path_dependencies(
    manifest: &toml::Table,
    dir: &Path,
    root: &Path,
    root_manifest: &toml::Table,
) -> Vec<PathBuf> {
    let table = |t: &toml::Table, k: &str| t.get(k).and_then(|v| v.as_table()).cloned();
    let mut tables: Vec<toml::Table> = ["dependencies", "build-dependencies"]
        .iter()
        .filter_map(|k| table(manifest, k))
        .collect();
    for target in table(manifest, "target").unwrap_or_default().values() {
        if let Some(t) = target.as_table() {
            tables.extend(
                ["dependencies", "build-dependencies"]
                    .iter()
                    .filter_map(|k| table(t, k)),
            );
        }
    }
    let workspace_deps = table(root_manifest, "workspace")
        .and_then(|w| table(&w, "dependencies"))
        .unwrap_or_default();
    let mut out = Vec::new();
    for (name, spec) in tables.iter().flatten() {
        if let Some(p) = spec.get("path").and_then(|p| p.as_str()) {
            out.push(dir.join(p));
        } else if spec.get("workspace").and_then(|w| w.as_bool()) == Some(true) {
            if let Some(p) = workspace_deps
                .get(name)
                .and_then(|d| d.get("path"))
                .and_then(|p| p.as_str())
            {
                out.push(root.join(p));
            }
        }
    }
    for source in table(root_manifest, "patch").unwrap_or_default().values() {
        for spec in source.as_table().into_iter().flat_map(|t| t.values()) {
            if let Some(p) = spec.get("path").and_then(|p| p.as_str()) {
                out.push(root.join(p));
            }
        }
    }
    out
}

/// The crate and every crate it reaches by path, each once.
fn crates_built(crate_dir: &Path, root: &Path) -> Result<Vec<PathBuf>, BuildError> {
    let root_manifest = read_manifest(&root.join("Cargo.toml"))?;
    let mut seen: Vec<PathBuf> = Vec::new();
    let mut todo = vec![crate_dir.to_path_buf()];
    while let Some(dir) = todo.pop() {
        let dir = dir
            .canonicalize()
            .map_err(|e| fail(format!("cannot open {}: {e}", dir.display())))?;
        if seen.contains(&dir) {
            continue;
        }
        let manifest = read_manifest(&dir.join("Cargo.toml"))?;
        todo.extend(path_dependencies(&manifest, &dir, root, &root_manifest));
        seen.push(dir);
    }
    Ok(seen)
}

/// Configuration cargo and rustup read for a build started in `root`:
/// `.cargo/config.toml` up the tree and in CARGO_HOME, and the toolchain file.
fn build_configuration(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for dir in root.ancestors() {
        for name in [
            ".cargo/config.toml",
            ".cargo/config",
            "rust-toolchain.toml",
            "rust-toolchain",
        ] {
            out.push(dir.join(name));
        }
    }
    if let Some(home) = cargo_home() {
        out.push(home.join("config.toml"));
        out.push(home.join("config"));
    }
    out.retain(|p| p.is_file());
    out
}

fn cargo_home() -> Option<PathBuf> {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
}

/// `rustc -vV` as the build will see it (started in `root`, where a
/// rust-toolchain file applies), asked once per process.
fn toolchain_version(root: &Path) -> Result<String, BuildError> {
    static SEEN: std::sync::Mutex<Vec<(PathBuf, String)>> = std::sync::Mutex::new(Vec::new());
    let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, v)) = seen.iter().find(|(r, _)| r == root) {
        return Ok(v.clone());
    }
    let out = Command::new("rustc")
        .arg("-vV")
        .current_dir(root)
        .env_clear()
        .envs(build_env(std::env::vars_os()))
        .output()
        .map_err(|e| {
            fail(format!(
                "cannot run rustc: {e}; is Rust installed (rustup.rs)?"
            ))
        })?;
    if !out.status.success() {
        return Err(fail(format!(
            "`rustc -vV` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let version = String::from_utf8_lossy(&out.stdout).into_owned();
    seen.push((root.to_path_buf(), version.clone()));
    Ok(version)
}

/// `path` relative to `base`, with `..` where it lies outside, so the hash
/// does not depend on where the checkout is.
fn relative(path: &Path, base: &Path) -> PathBuf {
    let (p, b): (Vec<_>, Vec<_>) = (path.components().collect(), base.components().collect());
    let common = p.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let mut out = PathBuf::new();
    for _ in common..b.len() {
        out.push("..");
    }
    for c in &p[common..] {
        out.push(c);
    }
    out
}

/// SHA-256 over everything that decides the binary: the files of the crate and
/// of the crates it reaches by path, the workspace's Cargo.toml (profiles
/// included) and Cargo.lock, cargo's configuration and the toolchain file,
/// the toolchain's version, the target and the build recipe. Contents count,
/// file times do not.
pub fn source_hash(crate_dir: &Path, arch: &str) -> Result<String, BuildError> {
    let root = workspace_root(crate_dir)?;
    let mut paths = Vec::new();
    for dir in crates_built(crate_dir, &root)? {
        files(&dir, &mut paths).map_err(|e| fail(format!("cannot read {}: {e}", dir.display())))?;
    }
    paths.extend([root.join("Cargo.toml"), root.join("Cargo.lock")]);
    paths.extend(build_configuration(&root));
    paths.sort();
    paths.dedup();
    let mut h = Sha256::new();
    h.update(RECIPE.as_bytes());
    h.update(target_triple(arch)?.as_bytes());
    h.update(toolchain_version(&root)?.as_bytes());
    for p in &paths {
        let data =
            std::fs::read(p).map_err(|e| fail(format!("cannot read {}: {e}", p.display())))?;
        h.update(relative(p, &root).to_string_lossy().as_bytes());
        h.update([0]);
        h.update((data.len() as u64).to_le_bytes());
        h.update(&data);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// The CodeSha256 of the artifact built from sources with this hash, if it
/// was built on this machine before.
pub fn cached_code_sha256(crate_dir: &Path, hash: &str) -> Option<String> {
    let zip = build_dir(&workspace_root(crate_dir).ok()?)
        .join("artifacts")
        .join(format!("{hash}.zip"));
    std::fs::read(zip).ok().map(|b| package::code_sha256(&b))
}

/// Where builds and artifacts go: a directory of the workspace's target dir, so
/// a build run from inside `cargo test` does not wait on the outer cargo's lock.
fn build_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("stackctl-lambda")
}

/// The environment of the nested cargo: what finds the toolchain and the C
/// compiler, and what reaches a registry from behind a corporate proxy.
/// Whatever else the caller has (cargo's own variables when run from `cargo
/// test`, RUSTFLAGS) would make cargo see changed inputs and rebuild the SDK
/// from scratch, or make the bytes differ; the network settings change
/// neither. The RUSTUP_* variables stay: without the caller's
/// RUSTUP_TOOLCHAIN, rustup resolves the toolchain afresh and may pick, or try
/// to download, another one.
fn build_env(
    vars: impl Iterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
) -> Vec<(String, std::ffi::OsString)> {
    const KEEP: &[&str] = &[
        "PATH",
        "HOME",
        "CARGO_HOME",
        "TMPDIR",
        "HTTPS_PROXY",
        "HTTP_PROXY",
        "ALL_PROXY",
        "NO_PROXY",
        "https_proxy",
        "http_proxy",
        "all_proxy",
        "no_proxy",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
    ];
    const KEEP_PREFIXES: &[&str] = &[
        "RUSTUP_",
        "CC_",
        "AR_",
        "CARGO_NET_",
        "CARGO_REGISTRIES_",
        "CARGO_REGISTRY_",
        "CARGO_HTTP_",
    ];
    vars.filter_map(|(k, v)| Some((k.into_string().ok()?, v)))
        .filter(|(k, _)| {
            KEEP.contains(&k.as_str()) || KEEP_PREFIXES.iter().any(|p| k.starts_with(p))
        })
        .collect()
}

/// Runs cargo with its progress shown on stderr as it goes (a cold build takes
/// minutes); returns whether it succeeded and the last lines, for the error.
fn run_showing_progress(
    cmd: &mut Command,
    events: &dyn Events,
) -> Result<(bool, Vec<String>), BuildError> {
    use std::io::BufRead;
    let mut child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("cannot run cargo: {e}")))?;
    let mut tail: std::collections::VecDeque<String> = std::collections::VecDeque::new();
    if let Some(stderr) = child.stderr.take() {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            events.emit(Event::BuildOutput { line: line.clone() });
            if tail.len() == 30 {
                tail.pop_front();
            }
            tail.push_back(line);
        }
    }
    let status = child
        .wait()
        .map_err(|e| fail(format!("cannot run cargo: {e}")))?;
    Ok((status.success(), tail.into()))
}

/// The zip for these sources: reused when it was built before, else built.
pub fn build(crate_dir: &Path, arch: &str, events: &dyn Events) -> Result<Artifact, BuildError> {
    let zip_path = artifact_path(crate_dir, arch)?;
    if let Some(artifact) = cached(&zip_path) {
        return Ok(artifact);
    }
    let _lock = lock_builds(&zip_path, events)?;
    // Another run may have built it while this one waited for the lock.
    match cached(&zip_path) {
        Some(artifact) => Ok(artifact),
        None => compile(crate_dir, arch, zip_path, events),
    }
}

/// Runs cargo whether or not the artifact is cached, and replaces the cached
/// zip atomically (readers see the old bytes or the new, never none).
pub fn rebuild(crate_dir: &Path, arch: &str, events: &dyn Events) -> Result<Artifact, BuildError> {
    let zip_path = artifact_path(crate_dir, arch)?;
    let _lock = lock_builds(&zip_path, events)?;
    compile(crate_dir, arch, zip_path, events)
}

/// Where the zip built from the current sources is cached.
fn artifact_path(crate_dir: &Path, arch: &str) -> Result<PathBuf, BuildError> {
    let hash = source_hash(crate_dir, arch)?;
    let dir = build_dir(&workspace_root(crate_dir)?);
    Ok(dir.join("artifacts").join(format!("{hash}.zip")))
}

fn cached(zip_path: &Path) -> Option<Artifact> {
    let zip = std::fs::read(zip_path).ok()?;
    Some(Artifact {
        bootstrap_size: 0,
        code_sha256: package::code_sha256(&zip),
        zip,
        zip_path: zip_path.to_path_buf(),
        built: false,
    })
}

/// One build at a time per artifact cache, across processes and threads
/// (cargo locks only while it runs; reading its output and writing the zip
/// must not interleave with another build). Released when the file closes.
fn lock_builds(zip_path: &Path, events: &dyn Events) -> Result<std::fs::File, BuildError> {
    let dir = zip_path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)
        .map_err(|e| fail(format!("cannot create {}: {e}", dir.display())))?;
    let path = dir.join("build.lock");
    let file = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| fail(format!("cannot open {}: {e}", path.display())))?;
    match file.try_lock() {
        Ok(()) => return Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => events.emit(Event::BuildOutput {
            line: format!("waiting for another build holding {}", path.display()),
        }),
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(fail(format!("cannot lock {}: {e}", path.display())))
        }
    }
    file.lock()
        .map_err(|e| fail(format!("cannot lock {}: {e}", path.display())))?;
    Ok(file)
}

fn compile(
    crate_dir: &Path,
    arch: &str,
    zip_path: PathBuf,
    events: &dyn Events,
) -> Result<Artifact, BuildError> {
    let root = workspace_root(crate_dir)?;
    let dir = build_dir(&root);
    let triple = target_triple(arch)?;
    let crate_dir = crate_dir.canonicalize().map_err(|e| fail(e.to_string()))?;
    let mut cmd = cargo_for(arch)?;
    events.emit(Event::Building {
        crate_dir: crate_dir.display().to_string(),
        target: triple.to_string(),
    });
    let args = [
        "--release",
        "--locked",
        "--target",
        triple,
        "--bin",
        "bootstrap",
    ];
    cmd.args(args)
        .arg("--manifest-path")
        .arg(crate_dir.join("Cargo.toml"))
        // From the workspace root, so its .cargo/config.toml (the musl C
        // compiler) applies wherever stackctl was started.
        .current_dir(&root)
        .env_clear()
        .envs(build_env(std::env::vars_os()))
        .env("CARGO_TARGET_DIR", &dir);
    let (ok, tail) = run_showing_progress(&mut cmd, events)?;
    if !ok {
        let text = tail.join("\n");
        let hint = missing_tool_hint(&text, triple);
        let crate_dir = crate_dir.display();
        return Err(fail(format!(
            "cargo build of {crate_dir} failed:\n{text}{hint}"
        )));
    }
    let binary = dir.join(triple).join("release").join("bootstrap");
    let bytes = std::fs::read(&binary)
        .map_err(|e| fail(format!("cannot read {}: {e}", binary.display())))?;
    let entry = package::Entry {
        name: "bootstrap",
        data: &bytes,
        mode: 0o755,
    };
    let zip = package::zip(&mut [entry]).map_err(|e| fail(e.to_string()))?;
    let mut tmp = tempfile::NamedTempFile::new_in(zip_path.parent().unwrap_or(&dir))
        .map_err(|e| fail(e.to_string()))?;
    std::io::Write::write_all(&mut tmp, &zip).map_err(|e| fail(e.to_string()))?;
    tmp.persist(&zip_path).map_err(|e| fail(e.to_string()))?;
    Ok(Artifact {
        bootstrap_size: bytes.len() as u64,
        code_sha256: package::code_sha256(&zip),
        zip,
        zip_path,
        built: true,
    })
}

/// `cargo build`, or for arm64 `cargo zigbuild` (cross-linking for aarch64
/// needs a linker: zig).
fn cargo_for(arch: &str) -> Result<Command, BuildError> {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    if arch != "arm64" {
        cmd.arg("build");
        return Ok(cmd);
    }
    let has_zigbuild = Command::new("cargo-zigbuild")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_zigbuild {
        return Err(fail("building for arm64 needs cargo-zigbuild and zig: `cargo install cargo-zigbuild` and `pip install ziglang`, or use architectures: [x86_64]"));
    }
    cmd.arg("zigbuild");
    Ok(cmd)
}

/// What to install when a failed build's output says a tool is missing.
fn missing_tool_hint(output: &str, triple: &str) -> String {
    if output.contains("target may not be installed")
        || output.contains("can't find crate for `std`")
    {
        format!(
            "\nthe Rust target is missing: run `rustup target add {triple}` (scripts/setup does)"
        )
    } else if output.contains("musl-gcc") {
        "\nthe musl C compiler is missing: `apt-get install musl-tools` (scripts/setup does)"
            .to_string()
    } else {
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_cargo_keeps_toolchain_and_proxy_settings_and_drops_cargos_variables() {
        let vars = [
            ("RUSTUP_TOOLCHAIN", "1.95.0-x86_64-unknown-linux-gnu"),
            ("RUSTUP_HOME", "/root/.rustup"),
            ("PATH", "/usr/bin"),
            ("CC_x86_64_unknown_linux_musl", "musl-gcc"),
            ("HTTPS_PROXY", "http://proxy.corp:3128"),
            ("CARGO_NET_GIT_FETCH_WITH_CLI", "true"),
            ("CARGO_REGISTRIES_CORP_INDEX", "sparse+https://crates.corp/"),
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
                "CARGO_NET_GIT_FETCH_WITH_CLI",
                "CARGO_REGISTRIES_CORP_INDEX",
                "CC_x86_64_unknown_linux_musl",
                "HTTPS_PROXY",
                "PATH",
                "RUSTUP_HOME",
                "RUSTUP_TOOLCHAIN"
            ]
        );
    }

    /// A workspace with the function crate `f` and a library `shared` outside
    /// it, which `f` uses by path.
    fn scratch_crate() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let write = |p: &str, text: &str| {
            let path = dir.path().join(p);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        };
        write("Cargo.lock", "# lock\n");
        write(
            "Cargo.toml",
            "[workspace]\nmembers = [\"f\", \"shared\"]\n[workspace.dependencies]\nshared = { path = \"shared\" }\n[profile.release]\nopt-level = 3\n",
        );
        write(
            "f/Cargo.toml",
            "[package]\nname = \"f\"\n[dependencies]\nshared.workspace = true\n",
        );
        write("f/src/main.rs", "fn main() {}\n");
        write("shared/Cargo.toml", "[package]\nname = \"shared\"\n");
        write("shared/src/lib.rs", "pub fn answer() -> u32 { 42 }\n");
        dir
    }

    #[test]
    fn source_hash_follows_contents_not_times() {
        let dir = scratch_crate();
        let f = dir.path().join("f");
        let a = source_hash(&f, "x86_64").unwrap();
        // Same bytes written again: a new mtime, the same hash.
        std::fs::write(f.join("src/main.rs"), "fn main() {}\n").unwrap();
        assert_eq!(source_hash(&f, "x86_64").unwrap(), a);
        std::fs::write(f.join("src/main.rs"), "fn main() { println!(); }\n").unwrap();
        let b = source_hash(&f, "x86_64").unwrap();
        assert_ne!(a, b);
        assert_ne!(
            source_hash(&f, "arm64").unwrap(),
            b,
            "the target is part of the hash"
        );
        // Build output inside the crate does not count.
        std::fs::create_dir_all(f.join("target")).unwrap();
        std::fs::write(f.join("target/junk"), "x").unwrap();
        assert_eq!(source_hash(&f, "x86_64").unwrap(), b);
    }

    #[test]
    fn source_hash_covers_path_dependencies_cargo_config_toolchain_file_and_profile() {
        let dir = scratch_crate();
        let f = dir.path().join("f");
        let mut seen = vec![source_hash(&f, "x86_64").unwrap()];
        let mut changes_hash = |file: &str, text: &str| {
            std::fs::create_dir_all(dir.path().join(file).parent().unwrap()).unwrap();
            std::fs::write(dir.path().join(file), text).unwrap();
            let h = source_hash(&f, "x86_64").unwrap();
            assert!(!seen.contains(&h), "changing {file} must change the hash");
            seen.push(h);
        };
        changes_hash("shared/src/lib.rs", "pub fn answer() -> u32 { 43 }\n");
        changes_hash(
            ".cargo/config.toml",
            "[build]\nrustflags = [\"-Ctarget-cpu=native\"]\n",
        );
        changes_hash("rust-toolchain.toml", "[toolchain]\nchannel = \"stable\"\n");
        changes_hash(
            "Cargo.toml",
            "[workspace]\nmembers = [\"f\", \"shared\"]\n[workspace.dependencies]\nshared = { path = \"shared\" }\n[profile.release]\nopt-level = \"s\"\n",
        );
    }

    #[test]
    fn paths_outside_the_workspace_are_named_relative_to_it() {
        assert_eq!(
            relative(Path::new("/w/lib/src/a.rs"), Path::new("/w/app")),
            Path::new("../lib/src/a.rs")
        );
        assert_eq!(
            relative(Path::new("/w/app/Cargo.toml"), Path::new("/w/app")),
            Path::new("Cargo.toml")
        );
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
