//! `bindgen!` output for the two worlds of `scanner:plugin@0.3.0`, the
//! contract in the workspace's `wit/`.
//!
//! The worlds import `wasi:http/outgoing-handler` from the WASI packages
//! vendored in `wit/deps`; `with:` maps those packages onto
//! `wasmtime-wasi-http`'s and `wasmtime-wasi`'s own bindings, so the host has
//! one set of WASI types, linked once by the engine for every contract
//! version.

/// Bindings of world `source-plugin`. Its `types`, `storage` and `log`
/// interfaces are the ones the sink world reuses, so the host implements the
/// imports once.
pub(crate) mod source {
    wasmtime::component::bindgen!({
        world: "source-plugin",
        path: "../../wit",
        imports: { default: async },
        exports: { default: async },
        with: {
            "wasi:http": wasmtime_wasi_http::p2::bindings::http,
            "wasi:io": wasmtime_wasi::p2::bindings::io,
            "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
        },
    });
}

/// Bindings of world `sink-plugin`, sharing the source world's interfaces.
pub(crate) mod sink {
    wasmtime::component::bindgen!({
        world: "sink-plugin",
        path: "../../wit",
        imports: { default: async },
        exports: { default: async },
        with: {
            "scanner:plugin/types": crate::bindings::v0_3::generated::source::scanner::plugin::types,
            "scanner:plugin/storage": crate::bindings::v0_3::generated::source::scanner::plugin::storage,
            "scanner:plugin/log": crate::bindings::v0_3::generated::source::scanner::plugin::log,
            "wasi:http": wasmtime_wasi_http::p2::bindings::http,
            "wasi:io": wasmtime_wasi::p2::bindings::io,
            "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
        },
    });
}
