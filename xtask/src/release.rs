//! Release checks: package metadata, changelog, packaging in dependency order, docs, feature
//! combinations, licenses and the public API snapshot.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::Value;

/// A publishable workspace crate, as `cargo metadata` describes it.
#[derive(Debug, Clone)]
pub struct Package {
    /// Crate name.
    pub name: String,
    /// Directory holding its `Cargo.toml`.
    pub dir: PathBuf,
    /// Names of the workspace crates it depends on (normal and build dependencies).
    pub workspace_deps: BTreeSet<String>,
    /// Its documented features (beyond `default`).
    pub features: Vec<String>,
    metadata: Value,
}

/// The fields every publishable crate must fill.
const REQUIRED_FIELDS: [&str; 7] = [
    "description",
    "license",
    "repository",
    "readme",
    "keywords",
    "categories",
    "rust_version",
];

/// Reads the workspace's publishable packages from `cargo metadata` JSON.
pub fn packages(metadata: &Value) -> Result<Vec<Package>, String> {
    let all = metadata["packages"]
        .as_array()
        .ok_or("cargo metadata: no packages")?;
    let names: BTreeSet<&str> = all.iter().filter_map(|p| p["name"].as_str()).collect();
    let mut out = Vec::new();
    for p in all {
        // `publish = false` shows as an empty list.
        if p["publish"].as_array().is_some_and(Vec::is_empty) {
            continue;
        }
        let name = p["name"]
            .as_str()
            .ok_or("package without a name")?
            .to_owned();
        let manifest = p["manifest_path"].as_str().ok_or("no manifest path")?;
        let dir = Path::new(manifest)
            .parent()
            .ok_or("manifest without a directory")?
            .to_path_buf();
        let workspace_deps = p["dependencies"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|d| d["kind"].is_null() || d["kind"] == "build")
            .filter_map(|d| d["name"].as_str())
            .filter(|n| names.contains(n))
            .map(str::to_owned)
            .collect();
        let features = p["features"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, _)| k.clone())
            .filter(|k| k != "default")
            .collect();
        out.push(Package {
            name,
            dir,
            workspace_deps,
            features,
            metadata: p.clone(),
        });
    }
    Ok(out)
}

/// Orders packages so that every crate comes after the workspace crates it depends on.
pub fn publish_order(packages: &[Package]) -> Result<Vec<String>, String> {
    let publishable: BTreeSet<&str> = packages.iter().map(|p| p.name.as_str()).collect();
    let mut remaining: BTreeMap<&str, BTreeSet<&str>> = packages
        .iter()
        .map(|p| {
            let deps = p
                .workspace_deps
                .iter()
                .map(String::as_str)
                .filter(|d| publishable.contains(d))
                .collect();
            (p.name.as_str(), deps)
        })
        .collect();
    let mut order = Vec::new();
    while !remaining.is_empty() {
        let ready: Vec<&str> = remaining
            .iter()
            .filter(|(_, deps)| deps.is_empty())
            .map(|(n, _)| *n)
            .collect();
        if ready.is_empty() {
            return Err(format!(
                "dependency cycle among {:?}",
                remaining.keys().collect::<Vec<_>>()
            ));
        }
        for n in ready {
            remaining.remove(n);
            for deps in remaining.values_mut() {
                deps.remove(n);
            }
            order.push(n.to_owned());
        }
    }
    Ok(order)
}

/// Problems with a package's metadata and files.
pub fn metadata_problems(p: &Package) -> Vec<String> {
    let mut out = Vec::new();
    for field in REQUIRED_FIELDS {
        let v = &p.metadata[field];
        let empty = v.is_null()
            || v.as_str().is_some_and(str::is_empty)
            || v.as_array().is_some_and(Vec::is_empty);
        if empty {
            out.push(format!("{}: `{field}` is missing", p.name));
        }
    }
    if let Some(readme) = p.metadata["readme"].as_str() {
        let path = p.dir.join(readme);
        if !path.is_file() {
            out.push(format!(
                "{}: readme {} does not exist",
                p.name,
                path.display()
            ));
        }
    }
    if !p.dir.join("src/lib.rs").is_file() && !p.dir.join("src/main.rs").is_file() {
        out.push(format!("{}: no src/lib.rs or src/main.rs", p.name));
    }
    out
}

/// Problems with the changelog (Keep a Changelog: an `## [Unreleased]` section).
pub fn changelog_problems(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    if !text.starts_with("# Changelog") {
        out.push("CHANGELOG.md does not start with `# Changelog`".into());
    }
    if !text.contains("## [Unreleased]") {
        out.push("CHANGELOG.md has no `## [Unreleased]` section".into());
    }
    if !text.contains("keepachangelog.com") {
        out.push("CHANGELOG.md does not say it follows Keep a Changelog".into());
    }
    out
}

/// Moves the changelog's Unreleased entries under `## [version] - date`, leaving an empty
/// Unreleased section above it.
pub fn release_changelog(text: &str, version: &str, date: &str) -> Result<String, String> {
    let marker = "## [Unreleased]";
    let at = text
        .find(marker)
        .ok_or("CHANGELOG.md has no `## [Unreleased]` section")?;
    if text.contains(&format!("## [{version}]")) {
        return Err(format!("CHANGELOG.md already has a section for {version}"));
    }
    let (head, tail) = text.split_at(at + marker.len());
    Ok(format!("{head}\n\n## [{version}] - {date}{tail}"))
}

/// Sets `version = "..."` in the `[workspace.package]` table of the root manifest, and the
/// `version` of every workspace path dependency.
pub fn bump_workspace_version(manifest: &str, version: &str) -> Result<String, String> {
    let mut out = String::with_capacity(manifest.len());
    let mut in_package = false;
    let mut bumped = false;
    for line in manifest.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with('[') {
            in_package = trimmed.starts_with("[workspace.package]");
        }
        if in_package && trimmed.starts_with("version") && !bumped {
            out.push_str("version = \"");
            out.push_str(version);
            out.push_str("\"\n");
            bumped = true;
            continue;
        }
        if trimmed.starts_with("bcfy")
            && trimmed.contains("path = \"crates/")
            && let Some(start) = line.find("version = \"")
        {
            let rest = &line[start + 11..];
            let end = rest.find('"').ok_or("unterminated version")?;
            out.push_str(&line[..start + 11]);
            out.push_str(version);
            out.push_str(&rest[end..]);
            out.push('\n');
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    if bumped {
        Ok(out)
    } else {
        Err("no version in [workspace.package]".into())
    }
}

/// Checks that `version` is plain `MAJOR.MINOR.PATCH`.
pub fn valid_version(version: &str) -> bool {
    let parts: Vec<&str> = version.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkg(name: &str, deps: &[&str]) -> Package {
        Package {
            name: name.into(),
            dir: PathBuf::from("/nonexistent"),
            workspace_deps: deps.iter().map(|d| (*d).to_owned()).collect(),
            features: vec![],
            metadata: serde_json::json!({"name": name}),
        }
    }

    #[test]
    fn publish_order_puts_dependencies_first() {
        let ps = [
            pkg("bcfy", &["bcfy-live", "bcfy-proto"]),
            pkg("bcfy-live", &["bcfy-transport", "bcfy-proto"]),
            pkg("bcfy-transport", &["bcfy-proto"]),
            pkg("bcfy-proto", &[]),
        ];
        let order = publish_order(&ps).expect("no cycle");
        assert_eq!(order, ["bcfy-proto", "bcfy-transport", "bcfy-live", "bcfy"]);
    }

    #[test]
    fn a_cycle_is_reported() {
        let ps = [pkg("a", &["b"]), pkg("b", &["a"])];
        assert!(publish_order(&ps).is_err());
    }

    #[test]
    fn missing_metadata_is_reported_per_field() {
        let p = pkg("bcfy-x", &[]);
        let problems = metadata_problems(&p);
        assert!(problems.iter().any(|p| p.contains("`description`")));
        assert!(problems.iter().any(|p| p.contains("`rust_version`")));
        assert!(problems.iter().any(|p| p.contains("no src/lib.rs")));
    }

    #[test]
    fn changelog_release_moves_unreleased() {
        let text = "# Changelog\nkeepachangelog.com\n\n## [Unreleased]\n\n### Added\n- x\n";
        assert!(changelog_problems(text).is_empty());
        let out = release_changelog(text, "0.2.0", "2026-11-26").expect("release");
        assert!(out.contains("## [Unreleased]\n\n## [0.2.0] - 2026-11-26\n\n### Added\n- x"));
        assert!(release_changelog(&out, "0.2.0", "2026-11-27").is_err());
        assert!(!changelog_problems("# Changes\n").is_empty());
    }

    #[test]
    fn version_bump_touches_package_and_path_deps() {
        let m = "[workspace.package]\nversion = \"0.1.0\"\n\n[workspace.dependencies]\nbcfy-proto = { path = \"crates/bcfy-proto\", version = \"0.1.0\" }\nserde = { version = \"1.0\" }\n";
        let out = bump_workspace_version(m, "0.2.0").expect("bump");
        assert!(out.contains("[workspace.package]\nversion = \"0.2.0\""));
        assert!(out.contains("path = \"crates/bcfy-proto\", version = \"0.2.0\""));
        assert!(out.contains("serde = { version = \"1.0\" }"));
        assert!(valid_version("0.2.0") && !valid_version("0.2") && !valid_version("v0.2.0"));
    }
}
