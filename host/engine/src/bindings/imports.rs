//! The host side of the `storage` and `log` imports, written once for
//! every contract version: each version's module implements its generated
//! `Host` traits by converting its own types to these and calling here.

use crate::plugin_log::escape_untrusted;
use crate::state::{HostState, StateSizes};
use scanner_contract as contract;

/// Largest key a plugin may use: keys are names, not data.
pub(crate) const MAX_KEY_BYTES: usize = 1024;
/// Largest value a plugin may store under one key.
pub(crate) const MAX_VALUE_BYTES: usize = 1024 * 1024;
/// Log messages and field values are cut here so a plugin cannot flood the
/// host's log with one call.
const MAX_LOG_BYTES: usize = 4096;
/// At most this many fields per log record are kept.
const MAX_LOG_FIELDS: usize = 32;

/// The level of a plugin's log record, whichever contract version sent it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LogLevel {
    /// `trace`.
    Trace,
    /// `debug`.
    Debug,
    /// `info`.
    Info,
    /// `warn`.
    Warn,
    /// `error`.
    Error,
}

impl HostState {
    // The tenant and the plugin come from the instance, never from the
    // guest: a plugin cannot name another tenant's keys, nor another
    // plugin's.

    /// `storage.get`: what this call wrote, or else the store's.
    pub(crate) fn storage_get(&mut self, key: &str) -> Option<Vec<u8>> {
        if key.len() > MAX_KEY_BYTES {
            return None;
        }
        if let Some(written) = self.state.pending.get(key) {
            return written.clone();
        }
        match self.kv.get(&self.tenant, &self.storage_plugin, key) {
            Ok(v) => v,
            Err(e) => {
                // `get` has no error case in the contract; a failing store
                // reads as "missing", which plugins already handle.
                tracing::warn!(tenant = %self.tenant, plugin = %self.plugin, error = %e, "storage get failed");
                None
            }
        }
    }

    /// `storage.set`; the error is the contract's `storage-error`. The
    /// quota is checked now, against the store's sizes read once in the
    /// call; the value is kept with the call's other writes and stored
    /// with them when the call returns ([`HostState::save_state`]).
    pub(crate) fn storage_set(&mut self, key: &str, value: &[u8]) -> Result<(), contract::KvError> {
        if key.len() > MAX_KEY_BYTES {
            return Err(contract::KvError::TooLarge(format!(
                "key is {} bytes; the limit is {MAX_KEY_BYTES}",
                key.len()
            )));
        }
        if value.len() > MAX_VALUE_BYTES {
            return Err(contract::KvError::TooLarge(format!(
                "value is {} bytes; the limit is {MAX_VALUE_BYTES}",
                value.len()
            )));
        }
        let sizes = self.state_sizes()?;
        let size = (key.len() + value.len()) as u64;
        let old = sizes.of.get(key).copied();
        let keys = sizes.keys + u64::from(old.is_none());
        let bytes = sizes.bytes - old.unwrap_or(0) + size;
        contract::check_state_quota(keys, bytes)?;
        (sizes.keys, sizes.bytes) = (keys, bytes);
        sizes.of.insert(key.to_string(), size);
        self.state
            .pending
            .insert(key.to_string(), Some(value.to_vec()));
        Ok(())
    }

    /// `storage.delete`, kept with the call's other writes.
    pub(crate) fn storage_delete(&mut self, key: &str) {
        if key.len() > MAX_KEY_BYTES {
            return;
        }
        match self.state_sizes() {
            Ok(sizes) => {
                if let Some(old) = sizes.of.remove(key) {
                    sizes.keys -= 1;
                    sizes.bytes -= old;
                }
                self.state.pending.insert(key.to_string(), None);
            }
            Err(e) => {
                tracing::warn!(tenant = %self.tenant, plugin = %self.plugin, error = %e, "storage delete failed");
            }
        }
    }

    /// `storage.list-prefix`: the store's keys with this call's writes.
    pub(crate) fn storage_list_prefix(&mut self, prefix: &str) -> Vec<String> {
        if prefix.len() > MAX_KEY_BYTES {
            return Vec::new();
        }
        let stored = self
            .kv
            .list_prefix(&self.tenant, &self.storage_plugin, prefix)
            .unwrap_or_else(|e| {
                tracing::warn!(tenant = %self.tenant, plugin = %self.plugin, error = %e, "storage list failed");
                Vec::new()
            });
        let mut keys: std::collections::BTreeSet<String> = stored.into_iter().collect();
        for (key, value) in &self.state.pending {
            if key.starts_with(prefix) {
                match value {
                    Some(_) => keys.insert(key.clone()),
                    None => keys.remove(key),
                };
            }
        }
        keys.into_iter().collect()
    }

    /// The sizes the quota counts, read from the store at the call's first
    /// write.
    fn state_sizes(&mut self) -> Result<&mut StateSizes, contract::KvError> {
        if self.state.sizes.is_none() {
            let of = self.kv.sizes(&self.tenant, &self.storage_plugin)?;
            self.state.sizes = Some(StateSizes {
                keys: of.len() as u64,
                bytes: of.values().sum(),
                of,
            });
        }
        Ok(self.state.sizes.as_mut().expect("filled above"))
    }

    /// Stores the call's state writes, all at once, and forgets the sizes
    /// (another call may find the store changed). A store that fails
    /// loses this call's writes, which is said in the log: plugin state
    /// is what a plugin can rebuild, and the call's own result stands.
    pub(crate) fn save_state(&mut self, call: &'static str) {
        self.state.sizes = None;
        if self.state.pending.is_empty() {
            return;
        }
        let pending = std::mem::take(&mut self.state.pending);
        if let Err(e) = self
            .kv
            .write_all(&self.tenant, &self.storage_plugin, &pending)
        {
            tracing::warn!(
                tenant = %self.tenant,
                plugin = %self.plugin,
                call,
                keys = pending.len(),
                error = %e,
                "the plugin state this call wrote was not saved"
            );
        }
    }

    /// `log.log`: one record into the host's log, within the call's budget.
    pub(crate) fn plugin_log(
        &mut self,
        level: LogLevel,
        message: &str,
        fields: &[(String, String)],
    ) {
        // The budget is checked first, so a flood of records costs the host
        // no more than counting them.
        let fields = &fields[..fields.len().min(MAX_LOG_FIELDS)];
        let size = truncate(message, MAX_LOG_BYTES).len()
            + fields
                .iter()
                .map(|(k, v)| truncate(k, MAX_LOG_BYTES).len() + truncate(v, MAX_LOG_BYTES).len())
                .sum::<usize>();
        if !self.log.admit(&self.tenant, size) {
            return;
        }
        // Every plugin-provided part is escaped: a newline in it must not
        // start a forged line in the host's log, nor an escape sequence
        // reach an operator's terminal.
        let message = escape_untrusted(truncate(message, MAX_LOG_BYTES)).into_owned();
        let fields: Vec<String> = fields
            .iter()
            .map(|(k, v)| {
                format!(
                    "{}={}",
                    escape_untrusted(truncate(k, MAX_LOG_BYTES)),
                    escape_untrusted(truncate(v, MAX_LOG_BYTES))
                )
            })
            .collect();
        let fields = fields.join(" ");
        let (tenant, plugin) = (&*self.tenant, &*self.plugin);
        // `tracing` needs the level at compile time, hence one arm each.
        match level {
            LogLevel::Trace => {
                tracing::trace!(target: "plugin", tenant, plugin, fields, "{message}")
            }
            LogLevel::Debug => {
                tracing::debug!(target: "plugin", tenant, plugin, fields, "{message}")
            }
            LogLevel::Info => {
                tracing::info!(target: "plugin", tenant, plugin, fields, "{message}")
            }
            LogLevel::Warn => {
                tracing::warn!(target: "plugin", tenant, plugin, fields, "{message}")
            }
            LogLevel::Error => {
                tracing::error!(target: "plugin", tenant, plugin, fields, "{message}")
            }
        }
    }
}

/// Cuts `s` to at most `max` bytes on a character boundary.
fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::truncate;

    #[test]
    fn truncate_keeps_char_boundaries() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("hello", 10), "hello");
    }
}
