"""Unit tests of config, github (with a fake transport) and mapping."""

import json
import time
import unittest

from componentize_py_types import Err
from wit_world.exports.scanner_source import FindingStatus, RawRecord, Severity
from wit_world.imports import scanner_plugin_types as t

import config
import github
import mapping
import transport


def settings(**given):
    out = []
    for key, value in given.items():
        key = key.replace("_", "-")
        wrap = t.SettingValue_Secret if key == "token" else t.SettingValue_Text
        out.append(t.Setting(key, wrap(value)))
    return out


def problem(call):
    try:
        call()
    except Err as e:
        return e.value
    raise AssertionError("no error")


GOOD = dict(api_url="http://127.0.0.1:8080/", org="acme", token="ghp_secret")


class ConfigTest(unittest.TestCase):
    def test_defaults_and_origin(self):
        c = config.parse(settings(org="acme", token="ghp_x"))
        self.assertEqual((c.api_url, c.origin), ("https://api.github.com", "https://api.github.com:443"))
        c = config.parse(settings(**GOOD))
        self.assertEqual((c.api_url, c.origin), ("http://127.0.0.1:8080", "http://127.0.0.1:8080"))
        self.assertNotIn("ghp_secret", repr(c))

    def test_each_problem_names_its_field(self):
        cases = [
            ("api-url", dict(GOOD, api_url="http://example.com")),
            ("api-url", dict(GOOD, api_url="ftp://example.com")),
            ("api-url", dict(GOOD, api_url="https://u:p@example.com")),
            ("org", dict(GOOD, org="-bad-")),
            ("org", dict(GOOD, org="")),
            ("token", dict(GOOD, token="  ")),
            ("token", {k: v for k, v in GOOD.items() if k != "token"}),
        ]
        for field, given in cases:
            err = problem(lambda: config.parse(settings(**given)))
            self.assertIsInstance(err, t.PluginError_InvalidConfig, given)
            self.assertEqual(err.value.field, field, given)
            self.assertNotIn("ghp_secret", err.value.message)


class FakeTransport:
    """Answers `transport.send` from a list of responses; records requests."""

    def __init__(self, *responses):
        self.responses, self.sent = list(responses), []

    def __call__(self, url, headers):
        self.sent.append((url, dict(headers)))
        answer = self.responses.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def answer(status, body=b"[]", **headers):
    return transport.Response(status, {k.replace("_", "-"): v for k, v in headers.items()}, body)


class GithubTest(unittest.TestCase):
    def setUp(self):
        self.config = config.parse(settings(**GOOD))
        self.real_send = transport.send

    def tearDown(self):
        transport.send = self.real_send

    def fetch(self, *responses, cursor=None):
        transport.send = fake = FakeTransport(*responses)
        try:
            return github.fetch(self.config, cursor), fake.sent
        except Err as e:
            return e.value, fake.sent

    def test_pages_by_the_link_headers_next_query(self):
        link = ('<http://127.0.0.1:8080/orgs/acme/dependabot/alerts?state=open&per_page=100&after=Y2'
                '>; rel="next", <http://127.0.0.1:8080/x?before=Y1>; rel="prev"')
        (alerts, cursor), sent = self.fetch(answer(200, b'[{"number": 1}]', link=link))
        self.assertEqual((alerts, cursor), ([{"number": 1}], "state=open&per_page=100&after=Y2"))
        url, headers = sent[0]
        self.assertEqual(url, "http://127.0.0.1:8080/orgs/acme/dependabot/alerts?state=open&per_page=100")
        self.assertEqual(headers["authorization"], "Bearer ghp_secret")
        self.assertEqual(headers["x-github-api-version"], "2022-11-28")
        (_, cursor), sent = self.fetch(answer(200), cursor="state=open&after=Y2")
        self.assertIsNone(cursor)
        self.assertTrue(sent[0][0].endswith("?state=open&after=Y2"))

    def test_rate_limits_carry_the_servers_wait(self):
        err, _ = self.fetch(answer(429, retry_after="7"))
        self.assertEqual((type(err), err.value.retry_after_seconds), (t.PluginError_RateLimited, 7))
        reset = str(int(time.time()) + 5)
        err, _ = self.fetch(answer(403, x_ratelimit_remaining="0", x_ratelimit_reset=reset))
        self.assertIsInstance(err, t.PluginError_RateLimited)
        self.assertIn(err.value.retry_after_seconds, (5, 6))
        err, _ = self.fetch(answer(403, b'{"message": "Resource not accessible"}'))
        self.assertIsInstance(err, t.PluginError_EndpointError)
        self.assertIn("Resource not accessible", err.value.message)

    def test_status_codes_map_to_the_contracts_kinds(self):
        cases = [
            (answer(401, b'{"message": "Bad credentials"}'), t.PluginError_AuthenticationFailed),
            (answer(404, b'{"message": "Not Found"}'), t.PluginError_InvalidConfig),
            (answer(404, b"<html>"), t.PluginError_EndpointError),
            (answer(502), t.PluginError_Transient),
            (answer(422, b'{"message": "bad"}'), t.PluginError_RequestRejected),
            (answer(200, b"<html>"), t.PluginError_Protocol),
            (answer(200, b'{"message": "x"}'), t.PluginError_Protocol),
            (transport.NoAnswer("denied", "no"), t.PluginError_EndpointError),
            (transport.NoAnswer("connection", "refused"), t.PluginError_Transient),
        ]
        for response, kind in cases:
            err, _ = self.fetch(response)
            self.assertIsInstance(err, kind, response)

    def test_redirects_are_followed_without_the_token_to_other_origins(self):
        elsewhere = "http://127.0.0.1:9999/orgs/acme/dependabot/alerts"
        (alerts, _), sent = self.fetch(answer(301, location=elsewhere), answer(200))
        self.assertEqual(alerts, [])
        self.assertEqual(sent[1][0], elsewhere)
        self.assertNotIn("authorization", sent[1][1])
        err, sent = self.fetch(*[answer(302, location="/again")] * 4)
        self.assertIsInstance(err, t.PluginError_EndpointError)
        self.assertEqual(len(sent), github.MAX_REDIRECTS + 1)


ALERT = {
    "number": 3, "state": "open", "html_url": "https://github.com/acme/shop/security/dependabot/3",
    "created_at": "2024-01-01T00:00:00Z", "updated_at": "2024-02-01T00:00:00Z",
    "dependency": {"package": {"ecosystem": "npm", "name": "lodash"}, "manifest_path": "a/package-lock.json"},
    "security_advisory": {"cve_id": "CVE-2021-23337", "summary": "Command\ninjection", "description": "d",
                          "severity": "high", "cvss": {"score": 7.2, "vector_string": "CVSS:3.1/AV:N"},
                          "epss": {"percentage": 0.02, "percentile": 0.9}},
    "security_vulnerability": {"severity": "medium", "vulnerable_version_range": "< 4.17.21",
                               "first_patched_version": {"identifier": "4.17.21"}},
    "repository": {"full_name": "acme/shop", "html_url": "https://github.com/acme/shop"},
}


def record(alert):
    return RawRecord("r", json.dumps(alert))


class MappingTest(unittest.TestCase):
    def test_an_alert_maps_field_by_field(self):
        f = mapping.map_record(record(ALERT))
        self.assertEqual(f.source_id, "acme/shop#3")
        self.assertEqual(f.title, "CVE-2021-23337 in lodash (npm): Command injection")
        self.assertEqual((f.severity, f.vendor_severity), (Severity.MEDIUM, Severity.HIGH))
        self.assertEqual((f.score, f.cvss_severity), (7.2, Severity.HIGH))
        self.assertEqual((f.epss.probability, round(f.epss.percentile, 6)), (0.02, 90.0))
        self.assertEqual(f.location.value.file_path, "a/package-lock.json")
        self.assertEqual(f.remediation, "Upgrade lodash to 4.17.21 or later (vulnerable: < 4.17.21).")

    def test_skips_alerts_without_cve_and_keeps_other_states(self):
        no_cve = dict(ALERT, security_advisory=dict(ALERT["security_advisory"], cve_id=None))
        self.assertIsNone(mapping.map_record(record(no_cve)))
        fixed = mapping.map_record(record(dict(ALERT, state="fixed")))
        self.assertEqual(fixed.status, FindingStatus.RESOLVED)
        odd = mapping.map_record(record(dict(ALERT, state="new-state")))
        self.assertEqual(odd.status, FindingStatus.UNKNOWN)
        no_cvss = dict(ALERT, security_advisory=dict(ALERT["security_advisory"],
                                                     cvss={"score": 0.0, "vector_string": None}))
        self.assertIsNone(mapping.map_record(record(no_cvss)).score)

    def test_broken_records_are_protocol_errors_for_that_record(self):
        for body in ["not json", "[1]", json.dumps(dict(ALERT, number="3"))]:
            err = problem(lambda: mapping.map_record(RawRecord("r", body)))
            self.assertIsInstance(err, t.PluginError_Protocol, body)


if __name__ == "__main__":
    unittest.main()
