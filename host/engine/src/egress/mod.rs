//! The single egress path of every plugin: a per-tenant allow-list of
//! origins, enforced in the `wasi:http` hook of every instance.
//!
//! Every outgoing request is checked in two steps:
//!
//! 1. the URL's scheme, host and port must equal one allowed origin (the
//!    `url` crate normalises the host first, so `0x7f.1` reads as
//!    `127.0.0.1`);
//! 2. the host is resolved here, every resolved address is vetted
//!    (no unspecified, multicast, broadcast, link-local or metadata
//!    addresses ever; loopback, RFC 1918, carrier-grade NAT, unique-local
//!    and the other private or special ranges only when the operator
//!    allowed the integration private networks: see `address`),
//!    and the connection is made to exactly those vetted addresses. The
//!    request is never handed to a client that would resolve the name a
//!    second time, so DNS rebinding between check and connect is not
//!    possible.
//!
//! Redirects are not followed here: each hop is a new request from the
//! plugin and passes through the same checks.
//!
//! Layout, lowest first: `address` (which network an address is on),
//! `denial` (why a request or origin was refused),
//! `policy` (which origins a tenant may reach), `timeouts` (how long a
//! request may take, and where its connection stands), `body` (body size
//! limits and the between-bytes timeout), `connector` (DNS vetting,
//! connecting to the vetted addresses, TLS configurations) and `hooks` (the
//! hook where each outgoing request is judged).

mod address;
mod body;
mod connector;
mod denial;
mod hooks;
mod policy;
mod timeouts;

pub use address::{AddressClass, classify};
pub use denial::EgressDenial;
pub use policy::{EgressPolicy, Origin, OriginScheme};

pub(crate) use connector::{Connections, TlsConfigs};
pub(crate) use hooks::{EgressHooks, HookSettings};
