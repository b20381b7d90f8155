// The scanner-host web console: plain JavaScript, no dependencies, no build
// step. It talks to the /v1 API of the host that served it.
//
// Everything a plugin or a scanner hands over (labels, help, descriptions,
// error messages, finding titles...) is hostile text: it is only ever put
// in the page with textContent or as attribute values of elements made
// with createElement, never parsed as HTML. The page's Content-Security-
// Policy also requires Trusted Types, so an HTML sink would throw.
"use strict";

(() => {
  const TOKEN_KEY = "scanner-host-token";
  // Findings per page in the browser, and per page while counting them.
  const PAGE_SIZE = 50;
  const COUNT_PAGE_SIZE = 1000;
  // Counting stops after this many pages: "at least N" beyond.
  const COUNT_MAX_PAGES = 20;
  // Export states that are not final yet (polled again).
  const EXPORT_PENDING = new Set(["pending", "queued", "running", "uploading", "waiting"]);
  const EXPORT_POLL_MS = 2000;
  const EXPORT_MAX_POLLS = 200;

  const $ = (id) => {
    const element = document.getElementById(id);
    if (!element) throw new Error(`the page has no #${id}`);
    return element;
  };

  // An element with text (never HTML) and attributes.
  function el(tag, text, attributes) {
    const element = document.createElement(tag);
    if (text !== undefined && text !== null) element.textContent = String(text);
    for (const [name, value] of Object.entries(attributes || {})) {
      element.setAttribute(name, String(value));
    }
    return element;
  }

  function clear(element) {
    while (element.firstChild) element.removeChild(element.firstChild);
  }

  // One message in the aria-live region (read out by screen readers).
  function announce(message) {
    $("live").textContent = message;
  }

  // ---- the token and the API --------------------------------------------

  function token() {
    return sessionStorage.getItem(TOKEN_KEY) || "";
  }

  /** An error answer of the API (or of the network), with its kind. */
  class ApiError extends Error {
    constructor(status, kind, message, field) {
      super(message);
      this.status = status;
      this.kind = kind;
      this.field = field;
    }
  }

  const path = (...parts) => "/v1/" + parts.map((p) => encodeURIComponent(p)).join("/");

  // `method path` with the token, `body` as JSON when given; the answer's
  // JSON (null for 204), or an ApiError.
  async function api(method, url, body) {
    const headers = { Authorization: `Bearer ${token()}`, Accept: "application/json" };
    const init = { method, headers, cache: "no-store", credentials: "omit" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(url, init);
    } catch (e) {
      throw new ApiError(0, "network", `the host did not answer (${e.message})`);
    }
    if (response.status === 204) return null;
    let json = null;
    const type = response.headers.get("Content-Type") || "";
    if (type.startsWith("application/json")) {
      try {
        json = await response.json();
      } catch (e) {
        throw new ApiError(response.status, "internal", "the host's answer is not valid JSON");
      }
    }
    if (!response.ok) {
      const error = (json && json.error) || {};
      const failure = new ApiError(
        response.status,
        typeof error.kind === "string" ? error.kind : `http-${response.status}`,
        typeof error.message === "string" ? error.message : `HTTP ${response.status}`,
        typeof error.field === "string" ? error.field : undefined,
      );
      if (response.status === 401) signedOut("The token was refused: " + failure.message);
      throw failure;
    }
    return json;
  }

  // ---- sign in and out ---------------------------------------------------

  function signedOut(why) {
    sessionStorage.removeItem(TOKEN_KEY);
    $("app").hidden = true;
    $("sign-out").hidden = true;
    $("sign-in").hidden = false;
    $("token-error").textContent = why || "";
    if (why) announce(why);
    $("token").focus();
  }

  async function signIn(event) {
    event.preventDefault();
    const value = $("token").value.trim();
    if (!value) {
      $("token-error").textContent = "Enter an API token.";
      $("token").focus();
      return;
    }
    sessionStorage.setItem(TOKEN_KEY, value);
    $("token").value = "";
    await start();
  }

  async function start() {
    $("token-error").textContent = "";
    try {
      await loadPlugins();
    } catch (e) {
      if (e.status !== 401) signedOut(`Could not load the plugins: ${e.message}`);
      return;
    }
    $("sign-in").hidden = true;
    $("app").hidden = false;
    $("sign-out").hidden = false;
    announce("Signed in.");
    await refreshStatus();
    await showFindings();
    $("plugin").focus();
  }

  // ---- plugins and their settings form -----------------------------------

  let plugins = [];
  // The inputs of the chosen plugin's fields: key -> {field, input, error}.
  let inputs = new Map();

  async function loadPlugins() {
    const answer = await api("GET", "/v1/plugins");
    plugins = Array.isArray(answer && answer.plugins) ? answer.plugins : [];
    const select = $("plugin");
    clear(select);
    for (const plugin of plugins) {
      select.append(el("option", `${plugin.name} ${plugin.version || ""}`.trim(), { value: plugin.name }));
    }
    if (plugins.length === 0) select.append(el("option", "no plugin loaded", { value: "" }));
    renderFields();
  }

  function chosenPlugin() {
    return plugins.find((p) => p.name === $("plugin").value);
  }

  // A plugin's default, whichever name the API gives it.
  const defaultOf = (field) => field.default_value ?? field.default ?? null;

  function renderFields() {
    const container = $("settings-fields");
    clear(container);
    inputs = new Map();
    const plugin = chosenPlugin();
    $("plugin-description").textContent = plugin ? plugin.description || "" : "";
    if (!plugin) return;
    const fields = Array.isArray(plugin.fields) ? plugin.fields : [];
    fields.forEach((field, index) => {
      if (!field || typeof field.key !== "string") return;
      // Ids by position: a plugin's keys never collide with the page's ids.
      const id = `setting-${index}`;
      const wrapper = el("div", null, { class: "field" });
      const label = el("label", field.label || field.key, { for: id });
      if (field.required) label.append(" ", el("span", "(required)", { class: "required" }));
      const help = el("p", field.help || "", { class: "help", id: `${id}-help` });
      const error = el("p", "", { class: "field-error", id: `${id}-error` });
      let input;
      if (field.kind === "boolean") {
        wrapper.classList.add("checkbox");
        input = el("input", null, { id, type: "checkbox" });
        const fallback = defaultOf(field);
        input.checked = fallback === null ? false : String(fallback) === "true";
        wrapper.append(input, label);
      } else {
        const type = field.kind === "secret" ? "password" : field.kind === "url" ? "url" : "text";
        input = el("input", null, { id, type, autocomplete: field.kind === "secret" ? "new-password" : "off", spellcheck: "false" });
        const fallback = defaultOf(field);
        if (fallback !== null) input.placeholder = `default: ${fallback}`;
        if (field.required) input.required = true;
        wrapper.append(label, input);
      }
      input.dataset.key = field.key;
      input.setAttribute("aria-describedby", `${id}-help ${id}-error`);
      wrapper.append(help, error);
      container.append(wrapper);
      inputs.set(field.key, { field, input, error });
    });
  }

  // ---- errors next to the field they concern ------------------------------

  function clearErrors() {
    for (const { input, error } of inputs.values()) {
      error.textContent = "";
      input.removeAttribute("aria-invalid");
    }
    for (const id of ["tenant-error", "connect-error", "connect-result"]) $(id).textContent = "";
    $("tenant").removeAttribute("aria-invalid");
  }

  function fieldError(entry, message) {
    entry.error.textContent = message;
    entry.input.setAttribute("aria-invalid", "true");
  }

  // The fields an error kind concerns: refused credentials are the secret
  // fields and the one naming the account (client-id and the like); an
  // endpoint error is the URL fields; an invalid configuration is the
  // field it names.
  function fieldsConcerned(error) {
    const all = [...inputs.values()];
    switch (error.kind) {
      case "authentication-failed":
        return all.filter(({ field }) =>
          field.kind === "secret" || /(^|[-_])(client|app|key|account)[-_]?id$|(^|[-_])user(name)?$/i.test(field.key));
      case "endpoint-error":
        return all.filter(({ field }) => field.kind === "url");
      case "invalid-config":
        return error.field && inputs.has(error.field) ? [inputs.get(error.field)] : [];
      default:
        return [];
    }
  }

  const KIND_TITLES = {
    "authentication-failed": "Credentials refused",
    "endpoint-error": "API endpoint problem",
    "invalid-config": "Invalid setting",
    "rate-limited": "Rate limited",
    transient: "Temporary failure",
  };

  function showError(error) {
    const title = KIND_TITLES[error.kind] || "Failed";
    const message = `${title} (${error.kind}): ${error.message}`;
    const concerned = fieldsConcerned(error);
    for (const entry of concerned) fieldError(entry, message);
    if (concerned.length > 0) {
      concerned[0].input.focus();
    } else {
      $("connect-error").textContent = message;
    }
    announce(message);
  }

  // ---- test and connect --------------------------------------------------

  // The request body of the form, or null after marking what is missing.
  function settingsBody() {
    clearErrors();
    const tenant = $("tenant").value.trim();
    let complete = true;
    if (!tenant) {
      $("tenant-error").textContent = "Required: a name for this integration.";
      $("tenant").setAttribute("aria-invalid", "true");
      complete = false;
    }
    const plugin = chosenPlugin();
    if (!plugin) {
      $("connect-error").textContent = "No plugin is loaded.";
      return null;
    }
    const settings = {};
    for (const [key, { field, input }] of inputs) {
      if (field.kind === "boolean") {
        settings[key] = input.checked;
        continue;
      }
      const value = field.kind === "secret" ? input.value : input.value.trim();
      if (value !== "") {
        settings[key] = value;
      } else if (field.required && field.kind !== "secret" && defaultOf(field) === null) {
        // An empty secret keeps the stored one on reconnect: the host
        // says whether one is stored.
        fieldError(inputs.get(key), "Required.");
        complete = false;
      }
    }
    if (!complete) {
      announce("Some required fields are empty.");
      const invalid = document.querySelector("#connect-form [aria-invalid=true]");
      if (invalid) invalid.focus();
      return null;
    }
    const body = {
      plugin: plugin.name,
      settings,
      allow_requested: $("allow-requested").checked,
      allow_private_network: $("allow-private-network").checked,
    };
    return { tenant, body };
  }

  function connectionText(connection) {
    if (!connection || typeof connection !== "object") return "";
    const parts = [];
    for (const key of ["summary", "account", "tenant", "message"]) {
      if (typeof connection[key] === "string" && connection[key]) parts.push(connection[key]);
    }
    return parts.join(" — ");
  }

  async function busy(button, work) {
    button.disabled = true;
    button.setAttribute("aria-busy", "true");
    try {
      return await work();
    } finally {
      button.disabled = false;
      button.removeAttribute("aria-busy");
    }
  }

  async function testSettings() {
    const request = settingsBody();
    if (!request) return;
    announce(`Testing ${request.tenant}…`);
    await busy($("test"), async () => {
      try {
        const answer = await api("POST", path("integrations", request.tenant, "test"), request.body);
        const message = `Test passed. ${connectionText(answer && answer.connection)}`.trim();
        $("connect-result").textContent = message;
        announce(message);
      } catch (e) {
        showError(e);
      }
    });
  }

  async function connect(event) {
    event.preventDefault();
    const request = settingsBody();
    if (!request) return;
    announce(`Connecting ${request.tenant}…`);
    await busy($("connect-button"), async () => {
      try {
        const answer = await api("PUT", path("integrations", request.tenant), request.body);
        // Secrets are not kept in the page once the host has them.
        for (const { field, input } of inputs.values()) if (field.kind === "secret") input.value = "";
        const message = `Connected ${request.tenant}. ${connectionText(answer && answer.connection)}`.trim();
        $("connect-result").textContent = message;
        announce(message);
        await refreshStatus();
        $("scan-tenant").value = request.tenant;
      } catch (e) {
        showError(e);
      }
    });
  }

  // ---- status per integration --------------------------------------------

  let integrations = [];

  function when(value) {
    if (!value) return "—";
    const date = new Date(value);
    return Number.isNaN(date.getTime()) ? String(value) : date.toLocaleString();
  }

  async function refreshStatus() {
    let answer;
    try {
      answer = await api("GET", "/v1/status");
    } catch (e) {
      announce(`Could not load the status: ${e.message}`);
      return;
    }
    integrations = Array.isArray(answer && answer.integrations) ? answer.integrations : [];
    renderStatus();
  }

  function tenantOptions(select) {
    const previous = select.value;
    clear(select);
    for (const row of integrations) select.append(el("option", row.tenant, { value: row.tenant }));
    if (integrations.some((row) => row.tenant === previous)) select.value = previous;
  }

  function renderStatus() {
    const body = $("integrations-body");
    clear(body);
    $("integrations-table").hidden = integrations.length === 0;
    $("integrations-empty").hidden = integrations.length !== 0;
    for (const row of integrations) {
      const tr = el("tr", null, { "data-tenant": row.tenant });
      tr.append(el("th", row.tenant, { scope: "row" }), el("td", row.plugin));
      const state = el("td", null, { class: "state" });
      if (row.state === "needs-attention") {
        state.append(el("strong", "needs attention", { class: "attention" }));
        if (row.attention_reason) state.append(el("span", `: ${row.attention_reason}`));
      } else {
        state.append(el("span", row.state === "connected" ? "connected" : row.state || "unknown"));
      }
      tr.append(state);
      const last = el("td");
      last.append(el("span", when(row.last_scan_at)));
      if (row.last_outcome) last.append(el("span", ` (${row.last_outcome})`));
      if (row.last_error) last.append(el("span", `: ${row.last_error}`, { class: "error-text" }));
      tr.append(last, el("td", when(row.next_scan_at)), el("td", row.open ?? 0), el("td", row.resolved ?? 0));
      const actions = el("td", null, { class: "row-actions" });
      const scan = el("button", "Scan now", { type: "button", "aria-label": `Scan ${row.tenant} now` });
      scan.addEventListener("click", () => {
        $("scan-tenant").value = row.tenant;
        startScan(row.tenant);
      });
      const disconnect = el("button", "Disconnect", { type: "button", "aria-label": `Disconnect ${row.tenant}` });
      disconnect.addEventListener("click", () => confirmDisconnect(row.tenant, actions, disconnect));
      actions.append(scan, disconnect);
      tr.append(actions);
      body.append(tr);
    }
    tenantOptions($("scan-tenant"));
    tenantOptions($("export-tenant"));
  }

  // Disconnecting deletes findings: a second, explicit button confirms.
  function confirmDisconnect(tenant, cell, trigger) {
    const box = el("span", null, { class: "confirm", role: "group", "aria-label": `Confirm disconnecting ${tenant}` });
    box.append(el("span", `Disconnect ${tenant} and delete its findings?`));
    const yes = el("button", "Yes, disconnect", { type: "button", class: "danger" });
    const no = el("button", "Cancel", { type: "button" });
    no.addEventListener("click", () => {
      box.remove();
      trigger.hidden = false;
      trigger.focus();
    });
    yes.addEventListener("click", () => busy(yes, async () => {
      try {
        await api("DELETE", path("integrations", tenant));
        announce(`Disconnected ${tenant}.`);
        await refreshStatus();
        $("refresh-status").focus();
      } catch (e) {
        announce(`Could not disconnect ${tenant}: ${e.message}`);
      }
    }));
    box.append(yes, no);
    trigger.hidden = true;
    cell.append(box);
    yes.focus();
  }

  // ---- scans with live progress -------------------------------------------

  let events = null;

  function scanState(state, text) {
    const element = $("scan-state");
    element.dataset.state = state;
    element.textContent = text;
  }

  function summaryText(scan) {
    const n = (key) => (typeof scan[key] === "number" ? scan[key] : 0);
    const state = scan.state || "completed";
    let text = `Scan of ${scan.tenant || "the tenant"} ${state}: ${n("pages")} pages, ${n("records")} records; ${n("new")} new, ${n("updated")} updated, ${n("reopened")} reopened, ${n("resolved")} resolved.`;
    if (scan.error) text += ` Error: ${typeof scan.error === "string" ? scan.error : JSON.stringify(scan.error)}`;
    return text;
  }

  async function scanEnded(scan) {
    if (events) {
      events.close();
      events = null;
    }
    const progress = $("scan-progress");
    if (scan.state === "completed" || !scan.state) {
      progress.max = 1;
      progress.value = 1;
    }
    const text = summaryText(scan);
    scanState(scan.state || "completed", text);
    announce(text);
    await refreshStatus();
    await showFindings();
  }

  async function startScan(tenant) {
    if (!tenant) {
      announce("Connect an integration first.");
      return;
    }
    if (events) events.close();
    $("scan-progress-box").hidden = false;
    const progress = $("scan-progress");
    progress.removeAttribute("value");
    scanState("starting", `Starting a scan of ${tenant}…`);
    announce(`Starting a scan of ${tenant}.`);
    let answer;
    try {
      answer = await busy($("start-scan"), () => api("POST", path("integrations", tenant, "scans")));
    } catch (e) {
      const text = e.kind === "scan-running" ? `A scan of ${tenant} is already running.` : `The scan could not start: ${e.message}`;
      scanState("failed", text);
      announce(text);
      return;
    }
    const scan = answer && typeof answer.scan === "object" ? answer.scan : answer || {};
    if (scan.state === "running" && scan.id !== undefined) {
      watchScan(tenant, scan.id);
    } else {
      // A host that answered when the scan ended: nothing to watch.
      await scanEnded({ tenant, ...scan });
    }
  }

  // Progress over server-sent events. EventSource cannot send headers: the
  // event stream takes the token as `access_token` (only that route does).
  function watchScan(tenant, id) {
    const url = `${path("integrations", tenant, "scans", String(id), "events")}?access_token=${encodeURIComponent(token())}`;
    const progress = $("scan-progress");
    scanState("running", `Scan ${id} of ${tenant} running…`);
    events = new EventSource(url);
    const data = (event) => {
      try {
        return JSON.parse(event.data);
      } catch (e) {
        return {};
      }
    };
    events.addEventListener("progress", (event) => {
      const p = data(event);
      if (typeof p.total === "number" && p.total > 0) {
        progress.max = p.total;
        progress.value = Math.min(p.records || 0, p.total);
      }
      const rate = typeof p.rate === "number" ? `, ${Math.round(p.rate)} records/s` : "";
      const total = typeof p.total === "number" ? ` of ${p.total}` : "";
      scanState("running", `Scan ${id} of ${tenant}: ${p.pages || 0} pages, ${p.records || 0}${total} records${rate}.`);
    });
    events.addEventListener("waiting", (event) => {
      const w = data(event);
      const seconds = typeof w.seconds === "number" ? w.seconds.toFixed(1) : "?";
      scanState("waiting", `Scan ${id} of ${tenant} waiting ${seconds} s: ${w.why || ""}`);
    });
    events.addEventListener("end", (event) => {
      scanEnded({ tenant, ...data(event) });
    });
    events.addEventListener("error", () => {
      // The stream broke before its end: ask for the scan instead.
      if (!events) return;
      events.close();
      events = null;
      pollScan(tenant, id);
    });
  }

  async function pollScan(tenant, id) {
    for (;;) {
      let scan;
      try {
        scan = await api("GET", path("integrations", tenant, "scans", String(id)));
      } catch (e) {
        scanState("unknown", `Lost track of scan ${id}: ${e.message}`);
        return;
      }
      if (scan && scan.state !== "running") {
        await scanEnded({ tenant, ...scan });
        return;
      }
      await new Promise((resolve) => setTimeout(resolve, 2000));
    }
  }

  // ---- findings --------------------------------------------------------------

  // The query of the current filters (without limit and cursor).
  function findingsQuery() {
    const query = new URLSearchParams();
    const pick = (name, id) => {
      const value = $(id).value.trim();
      if (value) query.set(name, value);
    };
    pick("severity", "filter-severity");
    pick("status", "filter-status");
    pick("kind", "filter-kind");
    pick("tenant", "filter-tenant");
    pick("repository", "filter-repository");
    pick("cve", "filter-cve");
    if ($("filter-unmapped").checked) query.set("include-unmapped", "true");
    return query;
  }

  let findingsState = { query: new URLSearchParams(), next: null, offset: 0 };
  // Bumped by every new listing: an older count still running is dropped.
  let listing = 0;

  async function showFindings(event) {
    if (event) event.preventDefault();
    listing += 1;
    findingsState = { query: findingsQuery(), next: null, offset: 0 };
    $("findings-count").textContent = "Counting…";
    $("findings-count").dataset.count = "";
    await Promise.all([loadFindingsPage(null), countFindings(listing, findingsState.query)]);
  }

  async function countFindings(id, base) {
    let count = 0;
    let cursor = null;
    for (let pages = 0; pages < COUNT_MAX_PAGES; pages++) {
      const query = new URLSearchParams(base);
      query.set("limit", String(COUNT_PAGE_SIZE));
      if (cursor) query.set("cursor", cursor);
      let answer;
      try {
        answer = await api("GET", `/v1/findings?${query}`);
      } catch (e) {
        if (id === listing) $("findings-count").textContent = `Could not count: ${e.message}`;
        return;
      }
      if (id !== listing) return;
      count += Array.isArray(answer.findings) ? answer.findings.length : 0;
      cursor = answer.next;
      if (!cursor) {
        $("findings-count").textContent = `${count} ${count === 1 ? "finding" : "findings"}`;
        $("findings-count").dataset.count = String(count);
        announce(`${count} findings match.`);
        return;
      }
    }
    $("findings-count").textContent = `At least ${count} findings`;
    $("findings-count").dataset.count = `${count}+`;
  }

  async function loadFindingsPage(cursor) {
    const query = new URLSearchParams(findingsState.query);
    query.set("limit", String(PAGE_SIZE));
    if (cursor) query.set("cursor", cursor);
    $("findings-error").textContent = "";
    let answer;
    try {
      answer = await api("GET", `/v1/findings?${query}`);
    } catch (e) {
      $("findings-error").textContent = `Could not list findings (${e.kind}): ${e.message}`;
      announce($("findings-error").textContent);
      $("findings-table").hidden = true;
      $("findings-next").hidden = true;
      return;
    }
    const rows = Array.isArray(answer.findings) ? answer.findings : [];
    findingsState.next = answer.next || null;
    renderFindings(rows);
    $("findings-next").hidden = !findingsState.next;
    $("findings-first").hidden = findingsState.offset === 0;
  }

  function safeLink(text, url) {
    try {
      const parsed = new URL(url);
      if (parsed.protocol === "https:" || parsed.protocol === "http:") {
        return el("a", text, { href: parsed.href, rel: "noopener noreferrer", target: "_blank" });
      }
    } catch (e) {
      // Not a URL: shown as text.
    }
    return el("span", text);
  }

  function renderFindings(rows) {
    const body = $("findings-body");
    clear(body);
    $("findings-table").hidden = rows.length === 0;
    for (const f of rows) {
      const tr = el("tr");
      const cves = Array.isArray(f.cves) ? f.cves.join(", ") : "";
      const title = el("td");
      title.append(f.url ? safeLink(f.title || "", f.url) : el("span", f.title || ""));
      const where = f.repository || (f.image ? `${f.image}` : "");
      const pkg = [f.package, f.version].filter(Boolean).join(" ") + (f.fixed_version ? ` (fixed in ${f.fixed_version})` : "");
      tr.append(
        el("td", f.severity, { class: `severity severity-${/^[a-z]+$/.test(f.severity) ? f.severity : "unknown"}` }),
        el("td", cves),
        title,
        el("td", f.kind),
        el("td", f.tenant),
        el("td", where),
        el("td", pkg),
        el("td", f.status),
        el("td", when(f.last_detected_at)),
      );
      body.append(tr);
    }
  }

  async function nextPage() {
    if (!findingsState.next) return;
    findingsState.offset += PAGE_SIZE;
    await loadFindingsPage(findingsState.next);
    announce(`Showing findings from ${findingsState.offset + 1}.`);
    $("findings-title").focus();
  }

  async function firstPage() {
    findingsState.offset = 0;
    await loadFindingsPage(null);
    $("findings-title").focus();
  }

  // ---- SARIF export ------------------------------------------------------

  function exportState(state, text) {
    $("export-state").dataset.state = state;
    $("export-state").textContent = text;
    announce(text);
  }

  function exportText(summary) {
    const parts = [`Export ${summary.id ?? ""} ${summary.state || ""}`.replace(/\s+/g, " ").trim()];
    if (summary.repository) parts.push(`repository ${summary.repository}`);
    if (summary.branch) parts.push(`branch ${summary.branch}`);
    if (typeof summary.findings === "number") parts.push(`${summary.findings} findings`);
    if (summary.error) parts.push(`error: ${typeof summary.error === "string" ? summary.error : JSON.stringify(summary.error)}`);
    return parts.join(", ");
  }

  async function startExport(event) {
    event.preventDefault();
    for (const id of ["export-repo-error", "export-branch-error", "export-file-error", "export-error"]) $(id).textContent = "";
    const tenant = $("export-tenant").value;
    const repo = $("export-repo").value.trim();
    const branch = $("export-branch").value.trim();
    const file = $("export-file").files[0];
    let complete = true;
    if (!tenant) {
      $("export-error").textContent = "Connect an integration first.";
      complete = false;
    }
    if (!repo) {
      $("export-repo-error").textContent = "Required.";
      complete = false;
    }
    if (!branch) {
      $("export-branch-error").textContent = "Required.";
      complete = false;
    }
    if (!file) {
      $("export-file-error").textContent = "Choose a SARIF file.";
      complete = false;
    }
    if (!complete) {
      announce("The export form is incomplete.");
      return;
    }
    const content = await file.text();
    await busy($("start-export"), async () => {
      let answer;
      try {
        answer = await api("POST", path("integrations", tenant, "exports"), {
          repo,
          branch,
          files: [{ name: file.name, content }],
        });
      } catch (e) {
        $("export-error").textContent = `The export was refused (${e.kind}): ${e.message}`;
        announce($("export-error").textContent);
        return;
      }
      let summary = (answer && answer.export) || answer || {};
      exportState(summary.state || "pending", exportText(summary));
      for (let polls = 0; EXPORT_PENDING.has(summary.state) && polls < EXPORT_MAX_POLLS; polls++) {
        await new Promise((resolve) => setTimeout(resolve, EXPORT_POLL_MS));
        try {
          summary = await api("GET", path("integrations", tenant, "exports", String(summary.id)));
        } catch (e) {
          exportState("unknown", `Lost track of the export: ${e.message}`);
          return;
        }
        exportState(summary.state || "unknown", exportText(summary));
      }
      await refreshStatus();
    });
  }

  // ---- wiring ------------------------------------------------------------

  document.addEventListener("DOMContentLoaded", () => {
    $("sign-in-form").addEventListener("submit", signIn);
    $("sign-out").addEventListener("click", () => signedOut("Token forgotten."));
    $("plugin").addEventListener("change", () => {
      clearErrors();
      renderFields();
    });
    $("test").addEventListener("click", testSettings);
    $("connect-form").addEventListener("submit", connect);
    $("refresh-status").addEventListener("click", refreshStatus);
    $("scan-form").addEventListener("submit", (event) => {
      event.preventDefault();
      startScan($("scan-tenant").value);
    });
    $("findings-form").addEventListener("submit", showFindings);
    $("findings-next").addEventListener("click", nextPage);
    $("findings-first").addEventListener("click", firstPage);
    $("export-form").addEventListener("submit", startExport);
    // Headings that receive focus after paging (not in the tab order).
    $("findings-title").setAttribute("tabindex", "-1");
    if (token()) {
      start();
    } else {
      $("token").focus();
    }
  });
})();
