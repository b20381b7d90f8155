// Wiz's own Backstage backend client (@wiz-sec/backstage-plugin-wiz-backend)
// importing every open finding of the connector's asset types from the
// simulator, for the side-by-side benchmark. The package exports only its
// Backstage plugin; its WizClient class is loaded from the built module the
// plugin itself uses, and configured the way the plugin configures it (a
// Backstage ConfigReader). getVulnerabilityFindings asks 20 a page (fixed in
// the client), status OPEN plus our filter; CVE-less findings are skipped
// and the rest written to CSV.
//
// Usage: node import.js API_ENDPOINT AUTH_URL CLIENT_ID OUT_CSV (secret in
// WIZ_CLIENT_SECRET). Prints {"records": received, "rows": written}.
'use strict';
const fs = require('fs');
const { ConfigReader } = require('@backstage/config');
const { WizClient } = require('@wiz-sec/backstage-plugin-wiz-backend/dist/services/WizClient.cjs.js');

const [apiEndpoint, authUrl, clientId, out] = process.argv.slice(2);
const config = new ConfigReader({
  wiz: { clientId, clientSecret: process.env.WIZ_CLIENT_SECRET, authUrl, apiEndpointUrl: apiEndpoint },
});
const csvField = (v) => {
  const s = v == null ? '' : String(v);
  return /[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
};

async function main() {
  const client = new WizClient(config);
  const file = fs.createWriteStream(out);
  file.write('id,cve,severity,status,asset,fixed_version,detected\n');
  let records = 0;
  let rows = 0;
  let after = null;
  for (;;) {
    const data = await client.getVulnerabilityFindings({ assetType: ['REPOSITORY_BRANCH', 'CONTAINER_IMAGE'] }, after);
    const page = data.vulnerabilityFindings;
    for (const n of page.nodes) {
      records += 1;
      const cve = n.vulnerabilityExternalId || n.name || '';
      if (!`${n.name} ${cve}`.toUpperCase().includes('CVE-')) continue;
      const asset = n.vulnerableAsset || {};
      const row = [n.id, cve, n.vendorSeverity, n.status, asset.name, n.fixedVersion, n.lastDetectedAt];
      if (!file.write(row.map(csvField).join(',') + '\n')) {
        await new Promise((resolve) => file.once('drain', resolve));
      }
      rows += 1;
    }
    if (!page.pageInfo.hasNextPage) break;
    after = page.pageInfo.endCursor;
  }
  await new Promise((resolve) => file.end(resolve));
  console.log(JSON.stringify({ records, rows }));
}

main().catch((err) => {
  console.error(`backstage import failed: ${err && err.message ? err.message : err}`);
  process.exit(1);
});
