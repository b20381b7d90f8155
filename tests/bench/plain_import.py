"""A plain sequential Wiz import, standard library only, for the side-by-side
benchmark: OAuth client credentials, then GraphQL vulnerabilityFindings 100 a
page over one kept-alive connection with the connector's filter (open, the
connector's asset types; CVE-less findings skipped), rows to CSV.

Usage: plain_import.py API_ENDPOINT AUTH_URL CLIENT_ID OUT_CSV (secret in
WIZ_CLIENT_SECRET, the query in WIZ_FINDINGS_QUERY). Prints {"records": received, "rows": written}."""
import csv, http.client, json, os, sys, urllib.parse

api, auth, client_id, out = (urllib.parse.urlsplit(sys.argv[1]), urllib.parse.urlsplit(sys.argv[2]),
                             sys.argv[3], sys.argv[4])
QUERY = os.environ["WIZ_FINDINGS_QUERY"]  # the connector's own query text, from the bench
form = urllib.parse.urlencode({"grant_type": "client_credentials", "client_id": client_id,
                               "client_secret": os.environ["WIZ_CLIENT_SECRET"], "audience": "wiz-api"})
conn = http.client.HTTPConnection(auth.netloc)
conn.request("POST", auth.path, form, {"Content-Type": "application/x-www-form-urlencoded"})
token = json.loads(conn.getresponse().read())["access_token"]
if api.netloc != auth.netloc:
    conn.close()
    conn = http.client.HTTPConnection(api.netloc)
headers = {"Authorization": "Bearer " + token, "Content-Type": "application/json"}
flt = {"status": ["OPEN"], "assetType": ["REPOSITORY_BRANCH", "CONTAINER_IMAGE"]}
records = rows = 0
after = None
with open(out, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["id", "cve", "severity", "status", "package", "version", "fixed_version", "asset", "detected"])
    while True:
        body = json.dumps({"query": QUERY, "variables": {"filterBy": flt, "first": 100, "after": after}})
        conn.request("POST", api.path, body, headers)
        resp = conn.getresponse()
        if resp.status != 200:
            sys.exit(f"GraphQL request failed: HTTP {resp.status}")
        page = json.loads(resp.read())["data"]["vulnerabilityFindings"]
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
