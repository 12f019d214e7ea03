//! Publishing a model version: `DIR/<model>/<version>/` appears whole or not
//! at all (DESIGN.md, "Model directory"). Shared by the trainer and the
//! quantizer.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Writes `files` (name, bytes) as the next version of the model directory
/// `model_dir` (created if missing): into a temporary directory beside the
/// versions, each file fsynced, the directory fsynced, then renamed to
/// `<max existing version + 1>`. Never overwrites an existing version: if
/// another publisher takes the number first, it retries with the next one.
/// Returns the new version directory.
pub fn publish(model_dir: &Path, files: &[(&str, &[u8])]) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(model_dir)?;
    let tmp = model_dir.join(format!(".publishing-{}-{}", std::process::id(), unique()));
    let result = (|| {
        std::fs::create_dir(&tmp)?;
        for (name, bytes) in files {
            if name.contains('/') || name.starts_with('.') || name.is_empty() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("bad file name {name:?}"),
                ));
            }
            let mut f = std::fs::File::create(tmp.join(name))?;
            f.write_all(bytes)?;
            f.sync_all()?;
        }
        std::fs::File::open(&tmp)?.sync_all()?;
        for _ in 0..100 {
            let version = next_version(model_dir)?;
            let target = model_dir.join(version.to_string());
            // rename(2) onto an existing non-empty directory fails, so a
            // version someone else just published is never replaced.
            if target.exists() {
                continue;
            }
            match std::fs::rename(&tmp, &target) {
                Ok(()) => {
                    std::fs::File::open(model_dir)?.sync_all()?;
                    return Ok(target);
                }
                Err(e) if target.exists() => drop(e),
                Err(e) => return Err(e),
            }
        }
        Err(std::io::Error::other(
            "could not claim a version number after 100 tries",
        ))
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result
}

/// One more than the largest integer-named version directory (1 if none).
pub fn next_version(model_dir: &Path) -> std::io::Result<u64> {
    let mut max = 0;
    for entry in std::fs::read_dir(model_dir)? {
        let name = entry?.file_name();
        if let Some(v) = name
            .to_str()
            .and_then(|n| n.parse::<u64>().ok())
            .filter(|&v| v > 0)
        {
            max = max.max(v);
        }
    }
    Ok(max + 1)
}

fn unique() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}
