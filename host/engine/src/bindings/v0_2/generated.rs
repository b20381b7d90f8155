//! `bindgen!` output for the two worlds of `scanner:plugin@0.2.0`, from the
//! frozen copy of that contract in the engine's `wit/since_v0.2.0/`.

/// Bindings of world `source-plugin`. Its `types`, `storage` and `log`
/// interfaces are the ones the sink world reuses, so the host implements the
/// imports once per version.
pub(crate) mod source {
    wasmtime::component::bindgen!({
        world: "source-plugin",
        path: "wit/since_v0.2.0",
        imports: { default: async },
        exports: { default: async },
    });
}

/// Bindings of world `sink-plugin`, sharing the source world's interfaces.
pub(crate) mod sink {
    wasmtime::component::bindgen!({
        world: "sink-plugin",
        path: "wit/since_v0.2.0",
        imports: { default: async },
        exports: { default: async },
        with: {
            "scanner:plugin/types": crate::bindings::v0_2::generated::source::scanner::plugin::types,
            "scanner:plugin/storage": crate::bindings::v0_2::generated::source::scanner::plugin::storage,
            "scanner:plugin/log": crate::bindings::v0_2::generated::source::scanner::plugin::log,
        },
    });
}
