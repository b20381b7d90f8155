//! `plugins`: the loaded plugins and their configuration fields.

use crate::args::{Format, Global};
use crate::output::print_rows;
use crate::setup::build_runtime;
use scanner_contract::PluginInfo;
use std::process::ExitCode;

/// Lists the plugins that load, one row per configuration field.
pub(crate) fn run(global: &Global, format: Format) -> anyhow::Result<ExitCode> {
    let runtime = build_runtime(global, false)?;
    let infos: Vec<&PluginInfo> = runtime.plugins().collect();
    print_plugins(&infos, format)?;
    Ok(ExitCode::SUCCESS)
}

/// Plugins as rows, one per configuration field.
fn print_plugins(infos: &[&PluginInfo], format: Format) -> anyhow::Result<()> {
    let headers = [
        "plugin", "version", "field", "kind", "required", "default", "label",
    ];
    let mut table = Vec::new();
    for info in infos {
        for f in &info.fields {
            table.push(vec![
                info.name.clone(),
                info.version.clone(),
                f.key.clone(),
                serde_json::to_value(f.kind)?
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                f.required.to_string(),
                f.default_value.clone().unwrap_or_default(),
                f.label.clone(),
            ]);
        }
    }
    print_rows(format, &headers, &table, || {
        Ok(serde_json::to_string_pretty(infos)?)
    })
}
