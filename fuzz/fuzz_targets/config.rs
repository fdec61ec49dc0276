#![no_main]
//! Configuration files (TOML and YAML): any text gives a config or a typed error naming the
//! key, never a panic.
use bcfy::config::{Config, FileFormat};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let format = if first & 1 == 0 { FileFormat::Toml } else { FileFormat::Yaml };
    let env: [(String, String); 0] = [];
    if let Ok(config) = Config::from_sources(Some((format, &text)), env) {
        assert!(config.validate().is_ok());
    }
});
