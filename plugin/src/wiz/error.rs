//! The error helpers every part of the client shares.
//!
//! They sit below everything else in the client so that any part can build
//! a plugin error without reaching back into the part that uses it.

use crate::types::{ErrorDetail, PluginError};

/// An error detail: what went wrong in words, and the code the other side
/// gave, if any.
pub(super) fn detail(message: impl Into<String>, code: Option<String>) -> ErrorDetail {
    ErrorDetail {
        message: message.into(),
        code,
    }
}

/// An answer that does not have the shape the Wiz API documents.
pub(super) fn protocol(message: impl Into<String>) -> PluginError {
    PluginError::Protocol(detail(message, None))
}
