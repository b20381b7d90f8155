"""Settings of the Dependabot plugin: the connect form (`describe`) and
their validation (`configure`).

Three fields: `api-url` (GitHub's REST API, or a GitHub Enterprise
Server's `https://HOST/api/v3`), `org` and `token` (a secret). Every
problem names its field; the token's value never appears in a message.
"""

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from componentize_py_types import Err

from wit_world.imports.scanner_plugin_types import (
    ConfigField, ConfigProblem, FieldKind, PluginError_InvalidConfig,
    SettingValue_Secret, SettingValue_Text,
)

DEFAULT_API_URL = "https://api.github.com"

# GitHub's own rule for organization logins: letters, digits and single
# hyphens, not at either end, at most 39 characters.
ORG_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38}$")

FIELDS = [
    ConfigField("api-url", "GitHub API URL", FieldKind.URL, DEFAULT_API_URL, False,
                "GitHub's REST API; for GitHub Enterprise Server https://HOST/api/v3"),
    ConfigField("org", "Organization", FieldKind.TEXT, None, True,
                "The organization whose Dependabot alerts are imported (its login, e.g. acme)"),
    ConfigField("token", "Access token", FieldKind.SECRET, None, True,
                "A token that may read the organization's Dependabot alerts "
                "(classic: security_events or repo scope; fine-grained: Dependabot alerts read)"),
]


@dataclass(frozen=True)
class Config:
    """A validated configuration. `repr` leaves the token out."""
    api_url: str
    origin: str
    org: str
    token: str

    def __repr__(self) -> str:
        return f"Config(api_url={self.api_url!r}, org={self.org!r}, token=<secret>)"


def invalid(field, message):
    """The `invalid-config` error naming `field`."""
    return Err(PluginError_InvalidConfig(ConfigProblem(field, message)))


def _is_loopback(host):
    return host == "localhost" or host == "::1" or host.startswith("127.")


def _api_url(text):
    """The API URL without a trailing slash, and its origin
    (`scheme://host:port`, the form the host's egress policy takes)."""
    try:
        url = urlsplit(text.strip())
        port = url.port
    except ValueError as e:
        raise invalid("api-url", f"not a valid URL ({e})")
    host = url.hostname
    if url.scheme not in ("https", "http"):
        raise invalid("api-url", f"must be an https URL, not {url.scheme or 'a relative one'}")
    if not host:
        raise invalid("api-url", "has no host")
    # Plain HTTP only for a local server: the token never crosses a
    # network unencrypted.
    if url.scheme == "http" and not _is_loopback(host):
        raise invalid("api-url", "must use https (http is accepted only for loopback hosts)")
    if url.username or url.password:
        raise invalid("api-url", "must not carry credentials")
    if url.query or url.fragment:
        raise invalid("api-url", "must not have a query or fragment")
    port = port or (443 if url.scheme == "https" else 80)
    shown = f"[{host}]" if ":" in host else host
    origin = f"{url.scheme}://{shown}:{port}"
    return f"{url.scheme}://{url.netloc}{url.path.rstrip('/')}", origin


def parse(settings):
    """A `Config` from the tenant's settings, or `Err(invalid-config)`."""
    given = {s.key: s.value for s in settings}
    unknown = sorted(set(given) - {f.key for f in FIELDS})
    if unknown:
        raise invalid(unknown[0], "is not a setting of this plugin")
    api = given.get("api-url", SettingValue_Text(DEFAULT_API_URL))
    if not isinstance(api, SettingValue_Text):
        raise invalid("api-url", "must be given as text")
    api_url, origin = _api_url(api.value)
    org = given.get("org")
    if not isinstance(org, SettingValue_Text) or not org.value.strip():
        raise invalid("org", "is required (the organization's login)")
    if not ORG_NAME.match(org.value.strip()):
        raise invalid("org", "must be a GitHub login: letters, digits and single "
                             "hyphens, at most 39 characters")
    token = given.get("token")
    if not isinstance(token, SettingValue_Secret):
        raise invalid("token", "is required, as a secret")
    if not token.value.strip():
        raise invalid("token", "is empty")
    if any(c.isspace() or ord(c) < 0x21 or ord(c) > 0x7e for c in token.value.strip()):
        raise invalid("token", "contains characters no GitHub token has")
    return Config(api_url, origin, org.value.strip(), token.value.strip())
