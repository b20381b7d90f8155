//! The wasm engine (being written).
