//! A tenant's settings from `--set` and `--secret`: typed against the
//! plugin's fields, and secrets read from the environment, a file or stdin,
//! never from the command line itself.

use crate::args::SecretArg;
use crate::error::UsageError;
use anyhow::{Context, anyhow, bail};
use scanner_contract::{FieldKind, PluginInfo, Secret, SettingValue, Settings};
use std::io::Read;

/// Typed settings from `--set` and `--secret`, checked against the plugin's
/// fields, on top of the tenant's existing settings (reconnect).
pub(crate) fn build_settings(
    info: &PluginInfo,
    mut settings: Settings,
    set: &[(String, String)],
    secret: &[SecretArg],
) -> anyhow::Result<Settings> {
    let field = |key: &str| {
        info.fields.iter().find(|f| f.key == key).ok_or_else(|| {
            let keys: Vec<&str> = info.fields.iter().map(|f| f.key.as_str()).collect();
            anyhow!(
                "unknown setting `{key}` for plugin {} (fields: {})",
                info.name,
                keys.join(", ")
            )
        })
    };
    for (key, value) in set {
        let value = match field(key)?.kind {
            FieldKind::Secret => bail!(
                "`{key}` is a secret: pass it with --secret {key}=env:VAR, --secret {key}=file:PATH or --secret {key}=-"
            ),
            FieldKind::Boolean => match value.to_ascii_lowercase().as_str() {
                "true" | "yes" | "1" | "on" => SettingValue::Boolean(true),
                "false" | "no" | "0" | "off" => SettingValue::Boolean(false),
                _ => bail!("`{key}` is a boolean: use true or false"),
            },
            FieldKind::Text | FieldKind::Url => SettingValue::Text(value.clone()),
        };
        settings.insert(key.clone(), value);
    }
    for arg in secret {
        let (key, source) = match arg {
            SecretArg::Pair(key, source) => (key, source),
            SecretArg::Malformed(text) => {
                // Name the field it starts with, if it starts with one:
                // anything else may be the secret itself.
                let text = text.expose();
                let head = text.split([':', '=']).next().unwrap_or_default();
                let named = info
                    .fields
                    .iter()
                    .find(|f| f.key == head)
                    .map(|f| format!(" for `{}`", f.key))
                    .unwrap_or_default();
                bail!(
                    "a --secret{named} is not KEY=env:VAR, KEY=file:PATH or KEY=- (its value is not shown)"
                );
            }
        };
        if !info.fields.iter().any(|f| f.key == *key) {
            // Not a field: the text before `=` may be part of a secret.
            let keys: Vec<&str> = info.fields.iter().map(|f| f.key.as_str()).collect();
            bail!(
                "a --secret names no setting of plugin {} (fields: {}; its value is not shown)",
                info.name,
                keys.join(", ")
            );
        }
        if field(key)?.kind != FieldKind::Secret {
            bail!("`{key}` is not a secret field: pass it with --set");
        }
        settings.insert(key.clone(), SettingValue::Secret(read_secret(key, source)?));
    }
    // Every required setting still missing, named at once: one round trip
    // to fix them all, not one per run.
    let missing: Vec<String> = info
        .fields
        .iter()
        .filter(|f| f.required && f.default_value.is_none() && !settings.contains_key(&f.key))
        .map(|f| match f.kind {
            FieldKind::Secret => format!("--secret {}=env:VAR", f.key),
            _ => format!("--set {}=…", f.key),
        })
        .collect();
    if !missing.is_empty() {
        return Err(UsageError(format!(
            "missing required setting(s) of plugin {}: {}",
            info.name,
            missing.join(", ")
        ))
        .into());
    }
    Ok(settings)
}

/// A secret from where `source` says: `env:VAR`, `file:PATH` or `-`
/// (stdin), without its trailing line break.
fn read_secret(key: &str, source: &str) -> anyhow::Result<Secret> {
    let value = if let Some(var) = source.strip_prefix("env:") {
        std::env::var(var)
            .map_err(|_| anyhow!("secret `{key}`: environment variable {var} is not set"))?
    } else if let Some(path) = source.strip_prefix("file:") {
        std::fs::read_to_string(path).with_context(|| format!("secret `{key}`: reading {path}"))?
    } else if source == "-" {
        let mut buf = String::new();
        std::io::stdin()
            .read_to_string(&mut buf)
            .with_context(|| format!("secret `{key}`: reading stdin"))?;
        buf
    } else {
        // Never echo `source`: it may be the secret typed by mistake.
        bail!(
            "secret `{key}` must be given as env:VAR, file:PATH or - (stdin), not on the command line"
        );
    };
    let value = value.trim_end_matches(['\r', '\n']).to_string();
    if value.is_empty() {
        bail!("secret `{key}` is empty");
    }
    Ok(Secret::new(value))
}
