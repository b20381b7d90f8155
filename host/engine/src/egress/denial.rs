//! Why the egress policy refused a request or an origin.

use std::net::IpAddr;

/// Why the policy refused a request or an origin.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EgressDenial {
    /// An origin given to [`EgressPolicy::from_origins`] does not parse or
    /// names a forbidden address.
    #[error("invalid egress origin `{origin}`: {reason}")]
    InvalidOrigin {
        /// The text given.
        origin: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The request's URL does not parse as an http(s) URL.
    #[error("malformed request URL `{url}`: {reason}")]
    BadUrl {
        /// The URL (without query).
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// The request's origin is not on the allow-list.
    #[error("origin {origin} is not allowed for this tenant")]
    NotAllowed {
        /// The origin asked for.
        origin: String,
    },
    /// The plugin tried a request during a call that runs with no network
    /// at all (`configure`).
    #[error("{call} runs without network; the request to {url} was refused")]
    Offline {
        /// The call.
        call: &'static str,
        /// The URL (without query).
        url: String,
    },
    /// The allowed name resolved to an address that is never reachable
    /// from a plugin (metadata, link-local, multicast…).
    #[error("origin {origin} resolved to {address}, a {range} address, which no plugin may reach")]
    ForbiddenAddress {
        /// The origin asked for.
        origin: String,
        /// The offending address.
        address: IpAddr,
        /// The range it lies in.
        range: &'static str,
    },
    /// The allowed name resolved to an address on a private or special
    /// network, and the integration was not allowed private networks.
    #[error(
        "origin {origin} resolved to {address}, a {range} address; the integration is not allowed private networks (connect with --allow-private-network)"
    )]
    PrivateAddress {
        /// The origin asked for.
        origin: String,
        /// The offending address.
        address: IpAddr,
        /// The range it lies in.
        range: &'static str,
    },
}
