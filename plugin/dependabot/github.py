"""GitHub's REST API for an organization's Dependabot alerts: one page
of `GET {api-url}/orgs/{org}/dependabot/alerts?state=open&per_page=100`,
paged by the `Link` header's `rel="next"` URL (GitHub puts an `after=`
cursor in it), and every answer that is not a page turned into the
contract's error case.

The page cursor the host stores is the query of the next URL: the plugin
always sends it to its own configured API URL, so a stored cursor can
never point a request elsewhere. Redirects are followed (GitHub answers
301 for a renamed organization) to at most 3 hops, each through the
host's egress policy; the token goes only to the configured origin.
"""

import json
import math
import time
from urllib.parse import urljoin, urlsplit

from componentize_py_types import Err
from wit_world.imports.scanner_plugin_types import (
    ConfigProblem, ErrorDetail, PluginError_AuthenticationFailed,
    PluginError_EndpointError, PluginError_InvalidConfig, PluginError_Protocol,
    PluginError_RateLimited, PluginError_RequestRejected, PluginError_Transient,
    RetryDetail,
)

import transport

USER_AGENT = "scanner-host-dependabot-plugin/0.1.0"
FIRST_PAGE = "state=open&per_page=100"
MAX_REDIRECTS = 3
_JSON_NAMES = {dict: "object", str: "string", int: "number", float: "number",
               bool: "boolean", type(None): "null"}


def _detail(message, code=None):
    return ErrorDetail(message, code)


def _number(text):
    try:
        return int(text.strip())
    except (AttributeError, ValueError):
        return None


def _github_message(body):
    """GitHub's own `message` from an error body, if it is GitHub's JSON."""
    try:
        value = json.loads(body)
    except ValueError:
        return None
    message = value.get("message") if isinstance(value, dict) else None
    return message if isinstance(message, str) else None


def _network_error(url, e):
    if e.kind in ("denied", "dns", "tls"):
        return Err(PluginError_EndpointError(_detail(f"cannot reach {url}: {e.message}")))
    return Err(PluginError_Transient(RetryDetail(f"cannot reach {url}: {e.message}", None)))


def _rate_limit(url, response):
    """The rate-limited error a 429 or a throttling 403 stands for, else None."""
    headers = response.headers
    retry_after = _number(headers.get("retry-after", ""))
    if retry_after is None and headers.get("x-ratelimit-remaining", "").strip() == "0":
        reset = _number(headers.get("x-ratelimit-reset", ""))
        if reset is not None:
            # Rounded up, and at least a second: a request sent before the
            # reset second has begun would be refused again.
            retry_after = max(1, math.ceil(reset - time.time()))
    if response.status == 429 or retry_after is not None:
        return Err(PluginError_RateLimited(RetryDetail(
            f"GitHub rate-limited {url} (HTTP {response.status})",
            None if retry_after is None else min(retry_after, 2**32 - 1))))
    return None


def _status_error(config, url, response):
    """The contract's error for a response that is not 200."""
    status, code = response.status, str(response.status)
    said = _github_message(response.body)
    suffix = f": {said}" if said else ""
    if status == 401:
        return Err(PluginError_AuthenticationFailed(_detail(
            f"GitHub refused the token (HTTP 401{suffix})", code)))
    if status in (403, 429):
        limited = _rate_limit(url, response)
        if limited:
            return limited
        return Err(PluginError_EndpointError(_detail(
            f"GitHub refused {url} to this token (HTTP 403{suffix}); it needs read access "
            "to the organization's Dependabot alerts", code)))
    if status == 404 and said is not None:
        return Err(PluginError_InvalidConfig(ConfigProblem("org", (
            f"organization `{config.org}` not found at {config.api_url}, or its Dependabot "
            f"alerts are not visible to this token (HTTP 404{suffix})"))))
    if status == 404:
        return Err(PluginError_EndpointError(_detail(
            f"{url} is not GitHub's REST API (HTTP 404 without GitHub's answer); "
            "check api-url", code)))
    if status >= 500:
        return Err(PluginError_Transient(RetryDetail(
            f"GitHub answered HTTP {status} for {url}{suffix}",
            _number(response.headers.get("retry-after", "")))))
    if 300 <= status < 400:
        return Err(PluginError_EndpointError(_detail(
            f"{url} redirected more than {MAX_REDIRECTS} times (HTTP {status})", code)))
    return Err(PluginError_RequestRejected(_detail(
        f"GitHub rejected {url} (HTTP {status}{suffix})", code)))


def _get(config, url):
    """GET `url`, following redirects: the `Response` of the last hop."""
    for _ in range(MAX_REDIRECTS + 1):
        headers = [("accept", "application/vnd.github+json"),
                   ("x-github-api-version", "2022-11-28"),
                   ("user-agent", USER_AGENT)]
        if _origin(url) == config.origin:
            headers.append(("authorization", f"Bearer {config.token}"))
        try:
            response = transport.send(url, headers)
        except transport.NoAnswer as e:
            raise _network_error(url, e)
        location = response.headers.get("location")
        if response.status not in (301, 302, 303, 307, 308) or not location:
            return url, response
        url = urljoin(url, location.strip())
    return url, response


def _origin(url):
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    host = parts.hostname or ""
    return f"{parts.scheme}://{f'[{host}]' if ':' in host else host}:{port}"


def _next_query(link):
    """The query of the `rel="next"` URL in a `Link` header, or None."""
    for part in link.split(","):
        target, _, params = part.partition(";")
        target = target.strip()
        if target.startswith("<") and target.endswith(">") and any(
                p.strip().replace(" ", "") in ('rel="next"', "rel=next") for p in params.split(";")):
            return urlsplit(target[1:-1]).query or None
    return None


def alerts_url(config, cursor=None):
    """The URL of the page `cursor` names (the first page when None)."""
    return f"{config.api_url}/orgs/{config.org}/dependabot/alerts?{cursor or FIRST_PAGE}"


def fetch(config, cursor=None):
    """One page: `(alerts, next_cursor)`, alerts being the decoded JSON
    objects in GitHub's order. Raises `Err(plugin-error)`."""
    url = alerts_url(config, cursor)
    url, response = _get(config, url)
    if response.status != 200:
        raise _status_error(config, url, response)
    try:
        alerts = json.loads(response.body)
    except ValueError as e:
        raise Err(PluginError_Protocol(_detail(
            f"{url} answered HTTP 200 with a body that is not JSON ({e.msg} at byte {e.pos})")))
    if not isinstance(alerts, list) or not all(isinstance(a, dict) for a in alerts):
        raise Err(PluginError_Protocol(_detail(
            f"{url} answered HTTP 200 with JSON that is not a list of alerts "
            f"(a JSON {_JSON_NAMES.get(type(alerts), 'array with non-object items')})")))
    next_cursor = _next_query(response.headers.get("link", ""))
    if next_cursor is not None and next_cursor == cursor:
        raise Err(PluginError_Protocol(_detail(
            f"{url} names itself as the next page: paging would never end")))
    return alerts, next_cursor
