"""The plain sequential Wiz import of plain_import.py, with `requests`: one
Session (kept-alive connection), OAuth client credentials, GraphQL
vulnerabilityFindings 100 a page with the connector's filter (open, the
connector's asset types; CVE-less findings skipped), rows to CSV.

Usage: requests_import.py API_ENDPOINT AUTH_URL CLIENT_ID OUT_CSV (secret in
WIZ_CLIENT_SECRET, the query in WIZ_FINDINGS_QUERY). Prints
{"records": received, "rows": written}."""
import csv, json, os, sys

import requests

api, auth, client_id, out = sys.argv[1:5]
QUERY = os.environ["WIZ_FINDINGS_QUERY"]  # the connector's own query text, from the bench
s = requests.Session()
r = s.post(auth, data={"grant_type": "client_credentials", "client_id": client_id,
                       "client_secret": os.environ["WIZ_CLIENT_SECRET"], "audience": "wiz-api"})
r.raise_for_status()
s.headers["Authorization"] = "Bearer " + r.json()["access_token"]
flt = {"status": ["OPEN"], "assetType": ["REPOSITORY_BRANCH", "CONTAINER_IMAGE"]}
records = rows = 0
after = None
with open(out, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["id", "cve", "severity", "status", "package", "version", "fixed_version", "asset", "detected"])
    while True:
        r = s.post(api, json={"query": QUERY, "variables": {"filterBy": flt, "first": 100, "after": after}})
        r.raise_for_status()
        page = r.json()["data"]["vulnerabilityFindings"]
        for n in page["nodes"]:
            records += 1
            cve = n.get("vulnerabilityExternalId") or n.get("name") or ""
            if "CVE-" not in f"{n.get('name')} {cve}".upper():  # the connector imports CVEs only
                continue
            asset = n.get("vulnerableAsset") or {}
            w.writerow([n["id"], cve, n.get("severity"), n.get("status"), n.get("detailedName"), n.get("version"),
                        n.get("fixedVersion"), asset.get("repositoryName") or asset.get("name"), n.get("lastDetectedAt")])
            rows += 1
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
print(json.dumps({"records": records, "rows": rows}))
