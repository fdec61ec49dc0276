//! The public API listing of a crate, from rustdoc's JSON output.

use std::collections::BTreeSet;

use serde_json::Value;

/// One line per public item of the local crate: `kind path`, sorted; for functions and methods
/// the line also carries the parameter names and count, so a changed signature shows.
pub fn listing(doc: &Value) -> String {
    let mut lines = BTreeSet::new();
    let index = &doc["index"];
    if let Some(paths) = doc["paths"].as_object() {
        for (id, summary) in paths {
            if summary["crate_id"].as_u64() != Some(0) {
                continue;
            }
            let kind = summary["kind"].as_str().unwrap_or("?");
            let path: Vec<&str> = summary["path"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let path = path.join("::");
            lines.insert(format!("{kind} {path}"));
            // Inherent methods of public types.
            let item = &index[id.as_str()];
            for impl_id in item["inner"][kind]["impls"]
                .as_array()
                .into_iter()
                .flatten()
            {
                let imp = &index[&impl_id_key(impl_id)];
                let inner = &imp["inner"]["impl"];
                if !inner["trait"].is_null() {
                    continue;
                }
                for m in inner["items"].as_array().into_iter().flatten() {
                    let method = &index[&impl_id_key(m)];
                    if method["visibility"] != "public" {
                        continue;
                    }
                    let name = method["name"].as_str().unwrap_or("?");
                    let params = signature(&method["inner"]["function"]);
                    lines.insert(format!("method {path}::{name}{params}"));
                }
            }
        }
    }
    let mut out = String::new();
    for l in lines {
        out.push_str(&l);
        out.push('\n');
    }
    out
}

fn impl_id_key(id: &Value) -> String {
    match id {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn signature(function: &Value) -> String {
    let inputs = function["sig"]["inputs"]
        .as_array()
        .or_else(|| function["decl"]["inputs"].as_array());
    match inputs {
        Some(list) => {
            let names: Vec<&str> = list
                .iter()
                .filter_map(|p| p.get(0).and_then(Value::as_str))
                .collect();
            format!("({})", names.join(", "))
        }
        None => String::new(),
    }
}
