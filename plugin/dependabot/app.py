"""The component's exports (`scanner-source`): what each call does with
the instance's configuration, the GitHub client (`github`) and the
mapping (`mapping`). One instance serves one tenant, so the configuration
`configure` accepted is kept in a module global for the calls after it.

Scans are full scans of open alerts: the organization alerts API cannot
filter by update time, so a page answers `incremental: false` whatever
`updated-since` asks, and the host resolves what a complete scan did not
return.
"""

import json

from componentize_py_types import Err, Ok
from wit_world import exports
from wit_world.exports.scanner_source import FindingPage, Page, RawRecord, RejectedRecord
from wit_world.imports import log
from wit_world.imports.scanner_plugin_types import (
    ConfigProblem, Configured, ConnectionInfo, ErrorDetail, PluginError_InvalidConfig,
    PluginError_Protocol, PluginInfo,
)

import config
import github
import mapping

VERSION = "0.1.0"
_config = None


def _configured():
    if _config is None:
        raise Err(PluginError_InvalidConfig(ConfigProblem(None, "configure must be called first")))
    return _config


def _page(request):
    alerts, next_cursor = github.fetch(_configured(), request.cursor)
    log.log(log.Level.DEBUG, "fetched a page of Dependabot alerts",
            [("alerts", str(len(alerts))), ("more", str(next_cursor is not None).lower())])
    return alerts, next_cursor


class ScannerSource(exports.ScannerSource):
    def describe(self):
        return PluginInfo("dependabot", VERSION,
                          "GitHub Dependabot: open alerts with a CVE of an organization's repositories",
                          config.FIELDS)

    def configure(self, settings):
        global _config
        _config = None
        _config = config.parse(settings)
        return Configured([_config.origin])

    def test(self):
        cfg = _configured()
        # One alert is enough to prove the token, the organization and
        # the permission: one request.
        alerts, _ = github.fetch(cfg, "state=open&per_page=1")
        seen = "open alerts" if alerts else "no open alerts"
        return ConnectionInfo(
            f"authenticated; Dependabot alerts of {cfg.org} readable ({seen})",
            github.alerts_url(cfg), [("organization", cfg.org)])

    def fetch_findings(self, request):
        alerts, next_cursor = _page(request)
        findings, skipped, rejected = [], 0, []
        for index, alert in enumerate(alerts):
            source_id = mapping.alert_id(alert)
            if source_id is None:
                rejected.append(RejectedRecord(f"alert {index} of the page", PluginError_Protocol(
                    ErrorDetail("the alert has no `number` or `repository.full_name`", None))))
                continue
            # A full scan imports open alerts only, whatever the server sent.
            finding = mapping.map_alert(alert, source_id) if alert.get("state") == "open" else None
            if finding is None:
                skipped += 1
            else:
                findings.append(finding)
        return FindingPage(findings, skipped, rejected, next_cursor, None, False)

    def fetch_page(self, request):
        alerts, next_cursor = _page(request)
        records = [RawRecord(mapping.alert_id(a) or f"alert {i} of the page", json.dumps(a))
                   for i, a in enumerate(alerts)]
        return Page(records, next_cursor, None, False)

    def map_finding(self, record):
        return mapping.map_record(record)

    def map_findings(self, records):
        out = []
        for record in records:
            try:
                out.append(Ok(mapping.map_record(record)))
            except Err as e:
                out.append(e)
        return out
