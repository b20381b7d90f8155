//! What the operator grants an integration: the origins its plugin's
//! configuration asked for, each approved, and whether they may reach
//! private networks. A plugin reports origins; only the operator grants
//! them.

use crate::error::RuntimeError;
use scanner_engine::{EgressPolicy, Origin};
use scanner_store::EgressGrants;

/// The operator's grants for a connect: every origin the plugin's
/// configuration requests must be covered, either named in `allow` or by
/// `allow_requested`. An origin named in `allow` that was not requested is
/// refused, so a typo never widens the sandbox unnoticed. The default
/// grants nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    /// Origins granted by name (`scheme://host[:port]`).
    pub allow: Vec<String>,
    /// Grant whatever the configuration requests (for scripts that
    /// already trust the settings they give).
    pub allow_requested: bool,
    /// Let the granted origins reach private and special networks
    /// (loopback, RFC 1918, carrier-grade NAT, unique-local…); metadata,
    /// link-local, multicast and unspecified addresses stay refused.
    pub allow_private_network: bool,
}

impl Grants {
    /// Grants whatever the configuration requests.
    pub fn requested() -> Grants {
        Grants {
            allow_requested: true,
            ..Grants::default()
        }
    }

    /// Grants exactly `origins`.
    pub fn origins<I, S>(origins: I) -> Grants
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Grants {
            allow: origins.into_iter().map(Into::into).collect(),
            ..Grants::default()
        }
    }

    /// The same grants, letting the origins reach private networks.
    pub fn with_private_network(mut self) -> Grants {
        self.allow_private_network = true;
        self
    }

    /// What these grants give a configuration that requests `requested`
    /// (origins in the plugin's text): the requested origins, to be
    /// stored. Refused when an origin in `allow` does not parse or was not
    /// requested, or when a requested origin is not granted (all such are
    /// named).
    pub(crate) fn grant(
        &self,
        tenant: &str,
        plugin: &str,
        requested: &[String],
    ) -> Result<EgressGrants, RuntimeError> {
        let requested_origins = requested
            .iter()
            .map(|o| normalise(plugin, o))
            .collect::<Result<Vec<_>, _>>()?;
        let mut allowed = Vec::with_capacity(self.allow.len());
        for text in &self.allow {
            let origin = Origin::parse(text).map_err(|e| RuntimeError::InvalidGrant {
                origin: text.clone(),
                reason: e.to_string(),
            })?;
            if !requested_origins.contains(&origin) {
                return Err(RuntimeError::InvalidGrant {
                    origin: text.clone(),
                    reason: format!(
                        "plugin `{plugin}` did not request it (requested: {})",
                        shown(&requested_origins)
                    ),
                });
            }
            allowed.push(origin);
        }
        if !self.allow_requested {
            let missing: Vec<Origin> = requested_origins
                .iter()
                .filter(|o| !allowed.contains(o))
                .cloned()
                .collect();
            if !missing.is_empty() {
                return Err(RuntimeError::NotGranted {
                    tenant: tenant.to_string(),
                    plugin: plugin.to_string(),
                    origins: missing.iter().map(Origin::to_string).collect(),
                });
            }
        }
        Ok(EgressGrants {
            origins: requested.to_vec(),
            private_network: self.allow_private_network,
        })
    }
}

/// `text` as an origin; one the host cannot accept is the plugin's
/// configuration error.
fn normalise(plugin: &str, text: &str) -> Result<Origin, RuntimeError> {
    Origin::parse(text).map_err(|e| RuntimeError::BadEgress {
        plugin: plugin.to_string(),
        message: e.to_string(),
    })
}

fn shown(origins: &[Origin]) -> String {
    if origins.is_empty() {
        return "none".to_string();
    }
    origins
        .iter()
        .map(Origin::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The policy an integration's stored grants give its instances.
pub(crate) fn granted_policy(
    plugin: &str,
    grants: &EgressGrants,
) -> Result<EgressPolicy, RuntimeError> {
    Ok(EgressPolicy::from_origins(&grants.origins)
        .map_err(|e| RuntimeError::BadEgress {
            plugin: plugin.to_string(),
            message: e.to_string(),
        })?
        .with_private_network(grants.private_network))
}

/// Refuses a configuration that requests an origin `policy` does not
/// allow (the settings or the plugin changed since connect), naming every
/// such origin, before any instance reaches anything.
pub(crate) fn check_requested(
    tenant: &str,
    plugin: &str,
    policy: &EgressPolicy,
    requested: &[String],
) -> Result<(), RuntimeError> {
    let mut missing = Vec::new();
    for text in requested {
        let origin = normalise(plugin, text)?.to_string();
        let granted = policy.origins().iter().any(|o| o.to_string() == origin);
        if !granted && !missing.contains(&origin) {
            missing.push(origin);
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(RuntimeError::NotGranted {
            tenant: tenant.to_string(),
            plugin: plugin.to_string(),
            origins: missing,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn requested() -> Vec<String> {
        vec![
            "https://api.example.com:443".to_string(),
            "https://auth.example.com".to_string(),
        ]
    }

    #[test]
    fn no_grant_refuses_naming_every_requested_origin() {
        let err = Grants::default()
            .grant("t", "wiz", &requested())
            .expect_err("refused");
        let text = err.to_string();
        assert!(text.contains("https://api.example.com:443"), "{text}");
        assert!(text.contains("https://auth.example.com:443"), "{text}");
        assert!(err.needs_attention());
    }

    #[test]
    fn allow_must_cover_every_requested_origin() {
        let err = Grants::origins(["https://api.example.com"])
            .grant("t", "wiz", &requested())
            .expect_err("refused");
        let text = err.to_string();
        assert!(text.contains("https://auth.example.com:443"), "{text}");
        assert!(!text.contains("https://api.example.com:443"), "{text}");
        let all = Grants::origins(["https://api.example.com", "https://auth.example.com:443"])
            .grant("t", "wiz", &requested())
            .expect("granted");
        assert_eq!(all.origins, requested());
        assert!(!all.private_network);
    }

    #[test]
    fn an_allow_not_requested_is_refused_naming_it() {
        let grants = Grants {
            allow: vec!["https://evil.example.com".into()],
            ..Grants::requested()
        };
        let err = grants.grant("t", "wiz", &requested()).expect_err("refused");
        assert!(matches!(err, RuntimeError::InvalidGrant { .. }));
        assert!(
            err.to_string().contains("https://evil.example.com"),
            "{err}"
        );
        let bad = Grants::origins(["not an origin"])
            .grant("t", "wiz", &requested())
            .expect_err("refused");
        assert!(bad.to_string().contains("not an origin"), "{bad}");
    }

    #[test]
    fn allow_requested_grants_what_was_requested_with_the_allowance() {
        let grants = Grants::requested()
            .with_private_network()
            .grant("t", "wiz", &requested())
            .expect("granted");
        assert_eq!(grants.origins, requested());
        assert!(grants.private_network);
    }

    #[test]
    fn a_later_configuration_asking_for_more_is_refused_naming_the_origin() {
        let grants = EgressGrants {
            origins: requested(),
            private_network: true,
        };
        let policy = granted_policy("wiz", &grants).expect("policy");
        assert!(policy.allows_private_network());
        check_requested("t", "wiz", &policy, &requested()[..1]).expect("subset");
        let mut more = requested();
        more.push("https://upload.example.com".into());
        let err = check_requested("t", "wiz", &policy, &more).expect_err("refused");
        assert!(
            err.to_string().contains("https://upload.example.com:443"),
            "{err}"
        );
        assert!(err.needs_attention());
    }
}
