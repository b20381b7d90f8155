//! Repository URLs and image references reduced to the keys the store
//! matches them by.

/// A repository URL reduced to `host/path` in lower case: scheme, user,
/// `.git`, case and trailing slashes ignored; `git@host:org/repo` accepted.
pub fn normalize_repo_url(url: &str) -> String {
    let mut s = url.trim().to_ascii_lowercase();
    for scheme in ["https://", "http://", "ssh://", "git://", "git+ssh://"] {
        if let Some(rest) = s.strip_prefix(scheme) {
            s = rest.to_string();
            break;
        }
    }
    if let Some((user, rest)) = s.split_once('@')
        && !user.contains('/')
    {
        s = rest.to_string();
    }
    // scp-like `host:org/repo` (but not `host:443/org`).
    if let Some((host, path)) = s.split_once(':')
        && !host.contains('/')
        && !path.starts_with(|c: char| c.is_ascii_digit())
    {
        s = format!("{host}/{path}");
    }
    let mut s = s.trim_end_matches('/').to_string();
    if let Some(stripped) = s.strip_suffix(".git") {
        s = stripped.trim_end_matches('/').to_string();
    }
    s
}

/// The last two segments of a `/`-separated path (fewer if it has fewer),
/// in lower case.
pub(crate) fn last_two_segments(path: &str) -> String {
    let path = path.trim_matches('/');
    let start = path
        .rmatch_indices('/')
        .nth(1)
        .map(|(i, _)| i + 1)
        .unwrap_or(0);
    path[start..].to_ascii_lowercase()
}

/// The name rule's key of an image (`registry/repository`, as
/// [`normalize_image`] gives it): the last two segments of its path, the
/// registry host left out (the first segment when it has a dot or a port or
/// is `localhost`, and more follows), so `registry.acme.io/acme/shop`
/// gives `acme/shop`. An image with a one-segment path gives that segment,
/// which equals no repository's `owner/name`: it matches nothing by name.
/// The migration that introduced it computes the same in SQL.
pub fn image_name_key(image: &str) -> Option<String> {
    let image = image.trim_matches('/');
    let path = match image.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            rest
        }
        _ => image,
    };
    Some(last_two_segments(path)).filter(|k| !k.is_empty())
}

/// An image reference reduced to lower-case `registry/repository`, without
/// tag or digest.
pub fn normalize_image(image: &str) -> String {
    let s = image.trim().to_ascii_lowercase();
    let s = s.split('@').next().unwrap_or_default();
    // A tag is a `:` after the last `/` (a `:` before it is a port).
    match s.rfind(':') {
        Some(i) if i > s.rfind('/').unwrap_or(0) => s[..i].to_string(),
        _ => s.to_string(),
    }
}

/// The key a container finding's image is matched on: its registry and
/// repository, normalised; none without a repository. Both backends key
/// stored findings with it.
pub fn image_key_of(registry: Option<&str>, repository: Option<&str>) -> Option<String> {
    repository.map(|repo| {
        normalize_image(&match registry {
            Some(reg) => format!("{reg}/{repo}"),
            None => repo.to_string(),
        })
    })
}
