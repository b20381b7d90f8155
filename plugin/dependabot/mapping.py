"""From one Dependabot alert (GitHub's JSON) to the contract's finding.

Tolerant like the Wiz plugin's mapping: unknown values map to `unknown`,
missing or mistyped optional fields stay empty. An alert without a CVE
(`security_advisory.cve_id`) is not imported (`None`); only a record that
is not a JSON object, or has no `number` or repository, is an error.

Where the fields go: the repository (`repository.html_url`, `full_name`)
and manifest path make a `code-dependency` finding's location; the
advisory's summary makes the title and its description the description;
`security_vulnerability.severity` is the scanner's severity and the
advisory's severity the vendor's; the CVSS score and its band, and EPSS,
come from the advisory. Dependabot names no installed version, so
`package-version` stays empty and the vulnerable range goes into the
remediation text beside the first patched version. `source-id` is
`OWNER/REPO#NUMBER`, the alert's number being unique per repository only.
"""

import json

from componentize_py_types import Err
from wit_world.exports.scanner_source import (
    Epss, Finding, FindingKind, FindingStatus, Location_Repository,
    RepositoryLocation, Severity,
)
from wit_world.imports.scanner_plugin_types import ErrorDetail, PluginError_Protocol

SEVERITIES = {"critical": Severity.CRITICAL, "high": Severity.HIGH,
              "medium": Severity.MEDIUM, "moderate": Severity.MEDIUM,
              "low": Severity.LOW, "none": Severity.NONE}
STATES = {"open": FindingStatus.OPEN, "fixed": FindingStatus.RESOLVED,
          "dismissed": FindingStatus.SUPPRESSED, "auto_dismissed": FindingStatus.SUPPRESSED}


def _get(value, *path):
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _text(value, *path):
    value = _get(value, *path)
    return value.strip() or None if isinstance(value, str) else None


def _float(value):
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _band(score):
    """CVSS's qualitative rating of a base score."""
    return (Severity.NONE if score == 0 else Severity.LOW if score < 4 else
            Severity.MEDIUM if score < 7 else Severity.HIGH if score < 9 else Severity.CRITICAL)


def _epss(advisory):
    """EPSS of the advisory: GitHub gives `percentage` (the probability)
    and `percentile` as fractions, as an object or a one-item list."""
    epss = _get(advisory, "epss")
    if isinstance(epss, list):
        epss = epss[0] if epss else None
    probability = _float(_get(epss, "percentage"))
    percentile = _float(_get(epss, "percentile"))
    if probability is None or percentile is None:
        return None
    if not (0 <= probability <= 1 and 0 <= percentile <= 1):
        return None
    return Epss(probability, percentile * 100, None)


def alert_id(alert):
    """`OWNER/REPO#NUMBER`, or None when the alert lacks either part."""
    number, repo = _get(alert, "number"), _text(alert, "repository", "full_name")
    if not isinstance(number, int) or isinstance(number, bool) or not repo:
        return None
    return f"{repo}#{number}"


def map_alert(alert, source_id):
    """The finding of a decoded alert with id `source_id`, or None when it
    carries no CVE. A non-open alert keeps its state as the status."""
    advisory = _get(alert, "security_advisory")
    cve = _text(advisory, "cve_id")
    if not cve:
        return None
    cve = cve.upper()
    package = _text(alert, "dependency", "package", "name")
    ecosystem = _text(alert, "dependency", "package", "ecosystem")
    summary = _text(advisory, "summary")
    where = f"{package} ({ecosystem})" if package and ecosystem else package
    title = f"{cve} in {where}" if where else cve
    if summary:
        title = f"{title}: {' '.join(summary.split())}"
    vendor = SEVERITIES.get((_text(advisory, "severity") or "").lower())
    severity = SEVERITIES.get((_text(alert, "security_vulnerability", "severity") or "").lower())
    score = _float(_get(advisory, "cvss", "score"))
    # GitHub reports 0.0 with no vector when the advisory has no CVSS.
    if score is not None and not (0 < score <= 10 and _get(advisory, "cvss", "vector_string")):
        score = None
    patched = _text(alert, "security_vulnerability", "first_patched_version", "identifier")
    vulnerable = _text(alert, "security_vulnerability", "vulnerable_version_range")
    fix = f"Upgrade {package or 'the package'} to {patched} or later" if patched else "No patched version yet"
    remediation = f"{fix} (vulnerable: {vulnerable})." if vulnerable else f"{fix}."
    return Finding(
        source_id=source_id, cve_ids=[cve], title=title,
        description=_text(advisory, "description"),
        severity=severity or vendor or Severity.UNKNOWN,
        score=score, cvss_severity=None if score is None else _band(score),
        vendor_severity=vendor, has_exploit=None, has_cisa_kev_exploit=None,
        epss=_epss(advisory),
        status=STATES.get(_text(alert, "state") or "", FindingStatus.UNKNOWN),
        kind=FindingKind.CODE_DEPENDENCY,
        package_name=package, package_version=None, fixed_version=patched,
        location=Location_Repository(RepositoryLocation(
            url=_text(alert, "repository", "html_url"),
            name=_text(alert, "repository", "full_name"), branch=None,
            file_path=_text(alert, "dependency", "manifest_path"))),
        first_detected_at=_text(alert, "created_at"),
        last_detected_at=_text(alert, "updated_at"),
        portal_url=_text(alert, "html_url"), remediation=remediation, projects=[])


def map_record(record):
    """`map-finding` of one raw record (an alert's JSON text)."""
    try:
        alert = json.loads(record.body)
    except ValueError as e:
        raise Err(PluginError_Protocol(ErrorDetail(
            f"record {record.id} is not valid JSON ({e.msg} at byte {e.pos})", None)))
    if not isinstance(alert, dict):
        raise Err(PluginError_Protocol(ErrorDetail(f"record {record.id} is not a JSON object", None)))
    source_id = alert_id(alert)
    if source_id is None:
        raise Err(PluginError_Protocol(ErrorDetail(
            f"record {record.id} has no `number` or `repository.full_name`", None)))
    return map_alert(alert, source_id)
