//! The connector's settings: the fields it describes, their validation,
//! and the authentication URL derived from the API endpoint.

use crate::types::{ConfigField, ConfigProblem, FieldKind, PluginError, Setting, SettingValue};
use url::{Host, Url};

/// Validated settings of one tenant.
#[derive(Clone, PartialEq, Eq)]
pub struct Config {
    /// The GraphQL endpoint, always ending in `/graphql`.
    pub api_endpoint: Url,
    /// The OAuth token endpoint.
    pub auth_url: Url,
    /// The `audience` the token endpoint expects.
    pub audience: String,
    /// Service account id.
    pub client_id: String,
    /// Service account secret; only ever sent to `auth_url`.
    pub client_secret: String,
    /// Import code-repository (SCA) findings.
    pub scan_sca: bool,
    /// Import container-image findings.
    pub scan_container_images: bool,
    /// Origins of Wiz's presigned upload URLs (export only).
    pub upload_origins: Vec<String>,
    /// GraphQL requests per second the connector allows itself; 0 means
    /// unpaced (simulators and benchmarks).
    pub requests_per_second: u32,
    /// Seconds each phase of a request (connecting, waiting for the
    /// response head, each pause within the body) may take.
    pub request_timeout_s: u32,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("api_endpoint", &self.api_endpoint.as_str())
            .field("auth_url", &self.auth_url.as_str())
            .field("client_id", &self.client_id)
            .field("client_secret", &"***")
            .field("scan_sca", &self.scan_sca)
            .field("scan_container_images", &self.scan_container_images)
            .field("requests_per_second", &self.requests_per_second)
            .field("request_timeout_s", &self.request_timeout_s)
            .field("upload_origins", &self.upload_origins)
            .finish()
    }
}

fn field(
    key: &str,
    label: &str,
    kind: FieldKind,
    default: Option<&str>,
    required: bool,
    help: &str,
) -> ConfigField {
    ConfigField {
        key: key.into(),
        label: label.into(),
        kind,
        default_value: default.map(str::to_string),
        required,
        help: Some(help.into()),
    }
}

/// The connect form of the Wiz connector.
pub fn fields() -> Vec<ConfigField> {
    vec![
        field(
            "api-endpoint",
            "API endpoint URL",
            FieldKind::Url,
            None,
            true,
            "From Wiz: User Settings > Tenant, e.g. https://api.us17.app.wiz.io/graphql",
        ),
        field(
            "auth-url",
            "Authentication URL",
            FieldKind::Url,
            None,
            false,
            "Token endpoint; derived from the API endpoint when empty (https://auth.app.wiz.io/oauth/token for commercial tenants)",
        ),
        field(
            "client-id",
            "Client ID",
            FieldKind::Text,
            None,
            true,
            "Service account client ID",
        ),
        field(
            "client-secret",
            "Client secret",
            FieldKind::Secret,
            None,
            true,
            "Service account secret (scope read:vulnerabilities, read:resources)",
        ),
        field(
            "scan-sca",
            "Import code repository (SCA) findings",
            FieldKind::Boolean,
            Some("true"),
            false,
            "Open CVE findings on repository branches",
        ),
        field(
            "scan-container-images",
            "Import container image findings",
            FieldKind::Boolean,
            Some("true"),
            false,
            "Open CVE findings in container images",
        ),
        field(
            "upload-origins",
            "Upload origins (export only)",
            FieldKind::Text,
            None,
            false,
            "Comma-separated origins of the presigned URLs Wiz hands out for uploads (an Amazon S3 bucket, e.g. https://BUCKET.s3.amazonaws.com); the host lets the export reach only these besides the API. Wiz does not publish the bucket: if an export is refused with `origin … is not allowed`, add the origin it names",
        ),
        field(
            "requests-per-second",
            "API requests per second",
            FieldKind::Text,
            Some(&DEFAULT_REQUESTS_PER_SECOND.to_string()),
            false,
            "The GraphQL request rate the connector keeps to, shared by its concurrent requests. Wiz is reported to allow 10 per second per service account (not officially published); 0 turns pacing off",
        ),
        field(
            "request-timeout-s",
            "Request timeout (seconds)",
            FieldKind::Text,
            Some(&DEFAULT_REQUEST_TIMEOUT_S.to_string()),
            false,
            "How long connecting, waiting for an answer and each pause within an answer may take before the request counts as timed out (and is retried)",
        ),
    ]
}

/// Long enough for Wiz's slowest reported page (a few seconds), short
/// enough that a server that never answers is noticed.
const DEFAULT_REQUEST_TIMEOUT_S: u32 = 30;

/// The host allows at most 120 s for a response head and 180 s for a whole
/// call; a longer request timeout would never take effect.
const MAX_REQUEST_TIMEOUT_S: u32 = 120;

/// Wiz's reported budget per service account (Port's integration and
/// other public clients say 10 requests/s; Wiz publishes no figure).
const DEFAULT_REQUESTS_PER_SECOND: u32 = 10;

/// Above this a pace is no pace at all; likely a typo.
const MAX_REQUESTS_PER_SECOND: u32 = 1000;

fn invalid(field: &str, message: impl Into<String>) -> PluginError {
    PluginError::InvalidConfig(ConfigProblem {
        field: Some(field.into()),
        message: message.into(),
    })
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        Some(Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

fn parse_url(key: &str, text: &str) -> Result<Url, PluginError> {
    let url =
        Url::parse(text.trim()).map_err(|e| invalid(key, format!("not a valid URL ({e})")))?;
    match url.scheme() {
        "https" => {}
        // Plain HTTP only for local test servers: credentials never cross
        // a network unencrypted.
        "http" if is_loopback(&url) => {}
        "http" => {
            return Err(invalid(
                key,
                "must use https (http is accepted only for loopback hosts)",
            ));
        }
        other => return Err(invalid(key, format!("must be an https URL, not {other}:"))),
    }
    if url.host().is_none() {
        return Err(invalid(key, "has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(key, "must not carry credentials"));
    }
    Ok(url)
}

/// Accept the endpoint with or without a trailing `/graphql` or `/`.
fn graphql_endpoint(mut url: Url) -> Url {
    let path = url.path().trim_end_matches('/').to_string();
    if !path.ends_with("/graphql") {
        url.set_path(&format!("{path}/graphql"));
    } else {
        url.set_path(&path);
    }
    url.set_query(None);
    url.set_fragment(None);
    url
}

/// The token URL and audience for an API endpoint, per the hosts Wiz
/// publishes.
///
/// - `*.app.wiz.io` (commercial) → `auth.app.wiz.io`, audience `wiz-api`;
/// - `*.gov.wiz.io` → `auth.gov.wiz.io`, `wiz-api`;
/// - `*.app.wiz.us` (Wiz for Government) → `auth.app.wiz.us`, `wiz-api`;
/// - a loopback endpoint (a local simulator) → `/oauth/token` on the same
///   origin.
///
/// Anything else must be configured explicitly.
pub fn derive_auth_url(api: &Url) -> Option<Url> {
    let host = api.host_str()?.to_ascii_lowercase();
    let target = if host.ends_with(".app.wiz.io") {
        "https://auth.app.wiz.io/oauth/token".to_string()
    } else if host.ends_with(".gov.wiz.io") {
        "https://auth.gov.wiz.io/oauth/token".to_string()
    } else if host.ends_with(".app.wiz.us") {
        "https://auth.app.wiz.us/oauth/token".to_string()
    } else if is_loopback(api) {
        format!("{}/oauth/token", api.origin().ascii_serialization())
    } else {
        return None;
    };
    Url::parse(&target).ok()
}

/// The audience a token URL expects: `beyond-api` for the legacy Auth0
/// hosts, `wiz-api` for everything else (Cognito). GUESS for unknown hosts:
/// Cognito is the current default.
pub fn audience_for(auth: &Url) -> &'static str {
    match auth.host_str().map(str::to_ascii_lowercase).as_deref() {
        Some("auth.wiz.io" | "auth0.gov.wiz.io" | "auth0.test.wiz.io") => "beyond-api",
        _ => "wiz-api",
    }
}

/// Validate a tenant's settings; every failure names its field.
pub fn parse(settings: &[Setting]) -> Result<Config, PluginError> {
    let known: Vec<String> = fields().into_iter().map(|f| f.key).collect();
    let mut api = None;
    let mut auth = None;
    let mut client_id = None;
    let mut client_secret = None;
    let mut scan_sca = true;
    let mut scan_images = true;
    let mut upload_origins = Vec::new();
    let mut requests_per_second = DEFAULT_REQUESTS_PER_SECOND;
    let mut request_timeout_s = DEFAULT_REQUEST_TIMEOUT_S;
    for s in settings {
        let key = s.key.as_str();
        if !known.iter().any(|k| k == key) {
            return Err(invalid(
                key,
                format!("unknown setting (known: {})", known.join(", ")),
            ));
        }
        match (key, &s.value) {
            ("api-endpoint", SettingValue::Text(t)) => {
                api = Some(graphql_endpoint(parse_url(key, t)?))
            }
            ("auth-url", SettingValue::Text(t)) if t.trim().is_empty() => {}
            ("auth-url", SettingValue::Text(t)) => auth = Some(parse_url(key, t)?),
            ("client-id", SettingValue::Text(t)) => {
                if t.trim().is_empty() {
                    return Err(invalid(key, "must not be empty"));
                }
                client_id = Some(t.trim().to_string());
            }
            ("client-secret", SettingValue::Secret(t)) => {
                if t.is_empty() {
                    return Err(invalid(key, "must not be empty"));
                }
                client_secret = Some(t.clone());
            }
            ("client-secret", _) => return Err(invalid(key, "must be passed as a secret")),
            ("scan-sca", SettingValue::Boolean(b)) => scan_sca = *b,
            ("scan-container-images", SettingValue::Boolean(b)) => scan_images = *b,
            ("upload-origins", SettingValue::Text(t)) => {
                for part in t.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                    let url = parse_url(key, part)?;
                    if url.path() != "/" || url.query().is_some() {
                        return Err(invalid(key, "an origin is scheme://host[:port] only"));
                    }
                    upload_origins.push(origin(&url));
                }
            }
            ("requests-per-second", SettingValue::Text(t)) => {
                requests_per_second = t
                    .trim()
                    .parse()
                    .ok()
                    .filter(|n| *n <= MAX_REQUESTS_PER_SECOND)
                    .ok_or_else(|| {
                        invalid(
                            key,
                            format!("must be a whole number from 0 to {MAX_REQUESTS_PER_SECOND}"),
                        )
                    })?;
            }
            ("request-timeout-s", SettingValue::Text(t)) => {
                request_timeout_s = t
                    .trim()
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_REQUEST_TIMEOUT_S).contains(n))
                    .ok_or_else(|| {
                        invalid(
                            key,
                            format!("must be a whole number of seconds from 1 to {MAX_REQUEST_TIMEOUT_S}"),
                        )
                    })?;
            }
            ("scan-sca" | "scan-container-images", _) => {
                return Err(invalid(key, "must be a boolean"));
            }
            // Never echo the value: a secret may have been passed in the
            // wrong field.
            (_, _) => return Err(invalid(key, "must be text")),
        }
    }
    let api_endpoint = api.ok_or_else(|| invalid("api-endpoint", "is required"))?;
    let auth_url = match auth {
        Some(a) => a,
        None => derive_auth_url(&api_endpoint).ok_or_else(|| {
            invalid(
                "auth-url",
                format!(
                    "is required: it cannot be derived from the API endpoint host {}",
                    api_endpoint.host_str().unwrap_or_default()
                ),
            )
        })?,
    };
    let client_id = client_id.ok_or_else(|| invalid("client-id", "is required"))?;
    let client_secret = client_secret.ok_or_else(|| invalid("client-secret", "is required"))?;
    if !scan_sca && !scan_images {
        return Err(invalid(
            "scan-sca",
            "scan-sca and scan-container-images are both off: nothing would be imported",
        ));
    }
    Ok(Config {
        audience: audience_for(&auth_url).to_string(),
        api_endpoint,
        auth_url,
        client_id,
        client_secret,
        scan_sca,
        scan_container_images: scan_images,
        upload_origins,
        requests_per_second,
        request_timeout_s,
    })
}

/// `scheme://host:port` of a URL, the form the host's egress policy takes.
fn origin(u: &Url) -> String {
    format!(
        "{}://{}:{}",
        u.scheme(),
        u.host_str().unwrap_or_default(),
        u.port_or_known_default().unwrap_or(443)
    )
}

impl Config {
    /// The origins this configuration contacts: the API, the token
    /// endpoint and the upload origins, as `scheme://host:port`.
    pub fn egress(&self) -> Vec<String> {
        let mut out = vec![origin(&self.api_endpoint)];
        for o in std::iter::once(origin(&self.auth_url)).chain(self.upload_origins.clone()) {
            if !out.contains(&o) {
                out.push(o);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(k: &str, v: &str) -> Setting {
        Setting {
            key: k.into(),
            value: SettingValue::Text(v.into()),
        }
    }

    fn good() -> Vec<Setting> {
        vec![
            text("api-endpoint", "https://api.us17.app.wiz.io/graphql"),
            text("client-id", "id"),
            Setting {
                key: "client-secret".into(),
                value: SettingValue::Secret("s3cr3t".into()),
            },
        ]
    }

    fn field_of(err: PluginError) -> String {
        match err {
            PluginError::InvalidConfig(p) => p.field.unwrap_or_default(),
            other => panic!("not a config error: {other:?}"),
        }
    }

    #[test]
    fn good_settings_derive_the_auth_url_and_egress() {
        let c = parse(&good()).expect("valid");
        assert_eq!(c.auth_url.as_str(), "https://auth.app.wiz.io/oauth/token");
        assert_eq!(c.audience, "wiz-api");
        assert_eq!(
            c.egress(),
            vec![
                "https://api.us17.app.wiz.io:443",
                "https://auth.app.wiz.io:443"
            ]
        );
        assert!(!format!("{c:?}").contains("s3cr3t"));
    }

    #[test]
    fn endpoint_suffixes_are_normalised() {
        for e in [
            "https://api.eu1.app.wiz.io",
            "https://api.eu1.app.wiz.io/",
            "https://api.eu1.app.wiz.io/graphql/",
        ] {
            let mut s = good();
            s[0] = text("api-endpoint", e);
            assert_eq!(
                parse(&s).expect("valid").api_endpoint.as_str(),
                "https://api.eu1.app.wiz.io/graphql"
            );
        }
    }

    #[test]
    fn gov_and_legacy_hosts() {
        let api = Url::parse("https://api.us2.app.wiz.us/graphql").expect("url");
        assert_eq!(
            derive_auth_url(&api).expect("derived").as_str(),
            "https://auth.app.wiz.us/oauth/token"
        );
        let auth0 = Url::parse("https://auth.wiz.io/oauth/token").expect("url");
        assert_eq!(audience_for(&auth0), "beyond-api");
        assert_eq!(
            derive_auth_url(&Url::parse("https://wiz.example.com/graphql").expect("url")),
            None
        );
    }

    #[test]
    fn each_bad_value_names_its_field() {
        let cases: Vec<(&str, Vec<Setting>)> = vec![
            (
                "api-endpoint",
                vec![
                    text("api-endpoint", "::nope"),
                    good()[1].clone(),
                    good()[2].clone(),
                ],
            ),
            (
                "api-endpoint",
                vec![
                    text("api-endpoint", "http://api.us17.app.wiz.io"),
                    good()[1].clone(),
                    good()[2].clone(),
                ],
            ),
            ("api-endpoint", vec![good()[1].clone(), good()[2].clone()]),
            (
                "auth-url",
                vec![
                    text("api-endpoint", "https://wiz.example.com"),
                    good()[1].clone(),
                    good()[2].clone(),
                ],
            ),
            (
                "client-id",
                vec![good()[0].clone(), text("client-id", " "), good()[2].clone()],
            ),
            (
                "client-secret",
                vec![
                    good()[0].clone(),
                    good()[1].clone(),
                    text("client-secret", "plain"),
                ],
            ),
            ("client-secret", vec![good()[0].clone(), good()[1].clone()]),
            ("scan-sca", [good(), vec![text("scan-sca", "yes")]].concat()),
            ("colour", [good(), vec![text("colour", "blue")]].concat()),
            (
                "requests-per-second",
                [good(), vec![text("requests-per-second", "ten")]].concat(),
            ),
            (
                "requests-per-second",
                [good(), vec![text("requests-per-second", "5000")]].concat(),
            ),
            (
                "request-timeout-s",
                [good(), vec![text("request-timeout-s", "0")]].concat(),
            ),
            (
                "request-timeout-s",
                [good(), vec![text("request-timeout-s", "121")]].concat(),
            ),
            (
                "request-timeout-s",
                [good(), vec![text("request-timeout-s", "1.5")]].concat(),
            ),
        ];
        for (want, settings) in cases {
            assert_eq!(field_of(parse(&settings).expect_err(want)), want);
        }
    }

    #[test]
    fn request_timeout_defaults_to_30_s_and_is_described() {
        assert_eq!(parse(&good()).expect("valid").request_timeout_s, 30);
        let s = [good(), vec![text("request-timeout-s", " 5 ")]].concat();
        assert_eq!(parse(&s).expect("valid").request_timeout_s, 5);
        let described = fields();
        let f = described
            .iter()
            .find(|f| f.key == "request-timeout-s")
            .expect("listed by describe");
        assert_eq!(f.default_value.as_deref(), Some("30"));
    }

    #[test]
    fn loopback_may_use_http() {
        let mut s = good();
        s[0] = text("api-endpoint", "http://127.0.0.1:9000/graphql");
        let c = parse(&s).expect("valid");
        assert_eq!(c.auth_url.as_str(), "http://127.0.0.1:9000/oauth/token");
    }
}
