// LiangHua web UI: log in, watch orders and live events, run backtests, create and run strategy instances and watch
// their equity; the trading desk's ticket, open orders, positions, TCA and bridge state are desk.js's. Plain JS, no
// build step, no CDN.
// Everything the server sends is put on the page with textContent, never as HTML.
"use strict";

(() => {
  const TOKEN_URL = "/api/v1/auth/token";
  const SESSION_KEY = "lianghua.session";
  const ORDERS_REFRESH_MS = 5000;
  const MAX_EVENTS = 200;
  const OPEN_STATUSES = new Set(["accepted", "submitted", "partially_filled", "unknown"]);
  const BACKTEST_ACTIVE = new Set(["queued", "running"]);
  const BACKTESTS_LIMIT = 20;
  const BACKTESTS_POLL_MS = 5000;
  const DEFAULT_SYMBOLS = 5;

  const $ = (id) => document.getElementById(id);
  const state = {
    session: null, // {token, username, role, accountId, expiresAt}
    socket: null,
    socketRetryMs: 1000,
    socketTimer: null,
    ordersTimer: null,
    expiryTimer: null,
    securities: new Map(),
    strategies: new Map(), // name -> {name, title, description, parameters}
    backtestProgress: new Map(), // backtest_id -> the latest backtest.progress payload
    backtestsTimer: null,
    paramSpecs: { backtest: [], instance: [] }, // per form: the selected strategy's parameters, as paramSpec() gives
    accountSeq: 0, // the latest account refresh: an older answer arriving after it is dropped
    instances: new Map(), // instance_id -> the instance, as the list last gave it
    instancesSeq: 0,
    instancesTimer: null,
    selectedInstance: null,
    detailSeq: 0, // the latest detail refresh: an answer for an instance no longer selected is dropped
    detailTimer: null,
    curve: [], // the selected instance's equity curve: [date, equity as the exact decimal string]
    curveCapital: null,
    chart: null,
    echartsLoading: null,
    replayClock: null, // unknown until a start with a replay answers (409 not_replay: the real clock)
  };

  // --- small helpers ---------------------------------------------------------------------------------------

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (value === undefined || value === null) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value);
    }
    for (const child of children) {
      if (child === undefined || child === null) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function show(node, visible) {
    node.classList.toggle("d-none", !visible);
  }

  function fmt(value) {
    return value === undefined || value === null || value === "" ? "—" : String(value);
  }

  function fmtTime(value) {
    if (!value) return "—";
    const date = new Date(value);
    return Number.isNaN(date.getTime()) ? String(value) : date.toLocaleString("zh-CN", { hour12: false });
  }

  // crypto.randomUUID exists only in secure contexts; getRandomValues works on plain http too (e.g. a LAN address).
  function newClientOrderId() {
    const bytes = new Uint8Array(12);
    crypto.getRandomValues(bytes);
    return "web-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  function errorText(result) {
    const data = result.data;
    if (data && typeof data === "object" && data.code) {
      return `${data.code}: ${data.message || ""}`.trim();
    }
    if (result.status === 0) return "network error: the gateway did not answer";
    return `HTTP ${result.status}`;
  }

  // --- API -------------------------------------------------------------------------------------------------

  async function api(path, { method = "GET", json, form } = {}) {
    const headers = { Accept: "application/json" };
    let body;
    if (state.session) headers.Authorization = `Bearer ${state.session.token}`;
    if (json !== undefined) {
      headers["Content-Type"] = "application/json";
      body = JSON.stringify(json);
    } else if (form !== undefined) {
      headers["Content-Type"] = "application/x-www-form-urlencoded";
      body = new URLSearchParams(form).toString();
    }
    let response;
    try {
      response = await fetch(path, { method, headers, body });
    } catch (err) {
      return { ok: false, status: 0, data: null, requestId: null };
    }
    let data = null;
    const text = await response.text();
    if (text) {
      try {
        data = JSON.parse(text);
      } catch (err) {
        data = { code: `http_${response.status}`, message: text.slice(0, 200) };
      }
    }
    const result = { ok: response.ok, status: response.status, data, requestId: response.headers.get("X-Request-ID") };
    if (response.status === 401 && path !== TOKEN_URL && state.session) {
      logout("Your session has ended: please log in again.");
    }
    return result;
  }

  // --- session ---------------------------------------------------------------------------------------------

  function loadSession() {
    try {
      const session = JSON.parse(sessionStorage.getItem(SESSION_KEY) || "null");
      if (session && session.token && session.expiresAt > Date.now()) return session;
    } catch (err) {
      console.warn("ignoring a malformed stored session", err);
    }
    sessionStorage.removeItem(SESSION_KEY);
    return null;
  }

  async function login(event) {
    event.preventDefault();
    const username = $("login-username").value.trim();
    const password = $("login-password").value;
    show($("login-error"), false);
    const result = await api(TOKEN_URL, { method: "POST", form: { username, password } });
    if (!result.ok) {
      $("login-error").textContent =
        result.data && result.data.code === "invalid_credentials" ? "Wrong username or password." : errorText(result);
      show($("login-error"), true);
      return;
    }
    $("login-password").value = "";
    state.session = {
      token: result.data.access_token,
      username,
      role: result.data.role,
      accountId: username,
      expiresAt: Date.now() + result.data.expires_in * 1000,
    };
    sessionStorage.setItem(SESSION_KEY, JSON.stringify(state.session));
    await startDesk();
  }

  function logout(message) {
    state.session = null;
    sessionStorage.removeItem(SESSION_KEY);
    clearInterval(state.ordersTimer);
    clearTimeout(state.expiryTimer);
    clearTimeout(state.socketTimer);
    clearTimeout(state.backtestsTimer);
    state.backtestProgress.clear();
    if (state.socket) {
      const socket = state.socket;
      state.socket = null;
      socket.close(1000, "logged out");
    }
    setSocketStatus("offline", "secondary");
    show($("desk-view"), false);
    show($("session"), false);
    show($("login-view"), true);
    $("orders").replaceChildren();
    clearTimeout(accountSoon);
    state.accountSeq += 1; // an answer still on its way belongs to the old session
    window.LHDesk.stop();
    $("backtests").replaceChildren();
    $("backtest-result").replaceChildren();
    clearStrategies();
    eachPage("stop");
    for (const page of PAGES) if ($(`${page}-view`)) show($(`${page}-view`), false);
    show($("pages"), false);
    if (message) {
      $("login-error").textContent = message;
      show($("login-error"), true);
    }
  }

  async function startDesk() {
    const session = state.session;
    show($("login-view"), false);
    show($("login-error"), false);
    show($("pages"), true);
    showPage(currentPage());
    show($("session"), true);
    $("whoami").textContent = `${session.username} · ${session.role}`;
    const canTrade = session.role === "trader" || session.role === "admin";
    $("order-fields").disabled = !canTrade;
    show($("order-readonly"), !canTrade);
    $("backtest-fields").disabled = !canTrade;
    show($("backtest-readonly"), !canTrade);
    $("instance-fields").disabled = !canTrade;
    show($("instance-readonly"), !canTrade);
    state.expiryTimer = setTimeout(() => logout("Your session has expired: please log in again."),
      Math.max(0, session.expiresAt - Date.now()));

    const me = await api("/api/v1/auth/me");
    if (!state.session) return; // the token was refused: logout() already ran
    if (me.ok) {
      session.accountId = me.data.account_id;
      session.role = me.data.role;
      sessionStorage.setItem(SESSION_KEY, JSON.stringify(session));
      const canRun = session.role === "trader" || session.role === "admin";
      $("backtest-fields").disabled = !canRun;
      show($("backtest-readonly"), !canRun);
      $("instance-fields").disabled = !canRun;
      show($("instance-readonly"), !canRun);
    }
    connectEvents();
    loadSecurities();
    loadStrategies();
    refreshOrders();
    refreshAccount();
    refreshBacktests();
    refreshInstances();
    window.LHDesk.start();
    eachPage("start");
    showPage(currentPage()); // the pages have started: the routed one shows what it loaded
    state.ordersTimer = setInterval(refreshOrders, ORDERS_REFRESH_MS);
  }

  // --- securities ------------------------------------------------------------------------------------------

  async function loadSecurities() {
    const result = await api("/api/v1/securities");
    if (!result.ok || !Array.isArray(result.data)) return;
    state.securities.clear();
    const options = result.data.map((s) => {
      state.securities.set(s.ts_code, s);
      const label = `${s.name || ""}${s.is_st ? " (ST)" : ""} · ${s.board || ""}`;
      return el("option", { value: s.ts_code, label });
    });
    $("securities").replaceChildren(...options);
    window.LHDesk.describeSecurity();
    // The demo market is small: its first few symbols make a backtest that runs at once.
    if (!$("backtest-symbols").value.trim()) {
      $("backtest-symbols").value = result.data.slice(0, DEFAULT_SYMBOLS).map((s) => s.ts_code).join(", ");
    }
    suggestSymbols();
    if (!$("instance-codes").value.trim()) {
      $("instance-codes").value = result.data.slice(0, DEFAULT_SYMBOLS).map((s) => s.ts_code).join(", ");
    }
  }

  // --- the order ticket's live quote (docs/quotes.md): subscribed on /ws; desk.js shows it -------------------------

  function sendOnSocket(message) {
    if (state.socket && state.socket.readyState === WebSocket.OPEN) state.socket.send(JSON.stringify(message));
  }

  // --- orders ----------------------------------------------------------------------------------------------

  function renderOrderResult(result) {
    if (result.ok) {
      const placed = (result.data && result.data.order) || result.data || {};
      return el(
        "div",
        { class: "alert alert-success mb-0", role: "status" },
        el("strong", { text: "Order accepted. " }),
        `${fmt(placed.order_id)} · ${fmt(placed.status)}`,
      );
    }
    const box = el("div", { class: "alert alert-danger mb-0", role: "alert" }, el("strong", { text: errorText(result) }));
    const reasons = result.data && result.data.decision && result.data.decision.reasons;
    if (Array.isArray(reasons) && reasons.length) {
      box.append(el("ul", { class: "mb-0 mt-2" }, ...reasons.map((r) => el("li", { text: `${r.code}: ${r.message}` }))));
    }
    const details = result.data && result.data.details;
    if (Array.isArray(details) && details.length) {
      box.append(el("ul", { class: "mb-0 mt-2" }, ...details.map((d) => el("li", { text: `${d.field}: ${d.message}` }))));
    }
    if (result.requestId) box.append(el("div", { class: "small text-body-secondary mt-2 mono", text: `request ${result.requestId}` }));
    return box;
  }

  async function refreshOrders() {
    if (!state.session) return;
    const result = await api("/api/v1/orders");
    if (!state.session) return;
    const errorBox = $("orders-error");
    if (!result.ok) {
      errorBox.textContent = `Could not load orders: ${errorText(result)}`;
      show(errorBox, true);
      return;
    }
    show(errorBox, false);
    const orders = Array.isArray(result.data) ? result.data : (result.data && (result.data.orders || result.data.items)) || [];
    orders.sort((a, b) => String(b.updated_at || b.created_at || "").localeCompare(String(a.updated_at || a.created_at || "")));
    const canTrade = state.session.role === "trader" || state.session.role === "admin";
    $("orders").replaceChildren(...orders.map((o) => orderRow(o, canTrade)));
    window.LHDesk.onOrders(orders);
    if (!orders.length) {
      $("orders").append(el("tr", {}, el("td", { colspan: "11", class: "text-body-secondary small", text: "No orders yet." })));
    }
    $("orders-updated").textContent = `updated ${new Date().toLocaleTimeString("zh-CN", { hour12: false })}`;
  }

  function orderRow(o, canTrade) {
    let action = null;
    if (canTrade && OPEN_STATUSES.has(o.status)) {
      action = el("button", {
        class: "btn btn-outline-danger btn-sm",
        type: "button",
        text: "Cancel",
        onclick: () => cancelOrder(o.order_id),
      });
    }
    return el(
      "tr",
      {},
      el("td", { class: "mono", text: fmt(o.order_id), title: `client id ${fmt(o.client_order_id)}` }),
      el("td", { text: fmt(o.ts_code) }),
      el("td", { class: `side-${o.side}`, text: fmt(o.side) }),
      el("td", { text: fmt(o.order_type) }),
      el("td", { class: "text-end", text: fmt(o.qty) }),
      el("td", { class: "text-end", text: fmt(o.price) }),
      el("td", {}, el("span", { class: `badge ${statusClass(o.status)}`, text: fmt(o.status), title: o.reason || undefined })),
      el("td", { class: "text-end", text: fmt(o.filled_qty) }),
      el("td", { class: "text-end", text: fmt(o.avg_fill_price) }),
      el("td", { class: "small", text: fmtTime(o.updated_at || o.created_at) }),
      el("td", {}, action),
    );
  }

  function statusClass(status) {
    return (
      {
        filled: "text-bg-success",
        partially_filled: "text-bg-info",
        submitted: "text-bg-primary",
        accepted: "text-bg-secondary",
        cancelled: "text-bg-light",
        rejected: "text-bg-danger",
        unknown: "text-bg-warning",
      }[status] || "text-bg-light"
    );
  }

  async function cancelOrder(orderId) {
    const result = await api(`/api/v1/orders/${encodeURIComponent(orderId)}/cancel`, { method: "POST" });
    if (!result.ok) {
      $("orders-error").textContent = `Cancel ${orderId}: ${errorText(result)}`;
      show($("orders-error"), true);
    }
    refreshOrders();
    refreshAccount();
  }

  // --- live events -----------------------------------------------------------------------------------------

  function setSocketStatus(text, color) {
    const badge = $("ws-status");
    badge.textContent = `events: ${text}`;
    badge.className = `badge text-bg-${color}`;
  }

  function connectEvents() {
    if (!state.session) return;
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(`${scheme}://${location.host}/ws?token=${encodeURIComponent(state.session.token)}`);
    state.socket = socket;
    setSocketStatus("connecting", "warning");
    socket.addEventListener("message", (message) => {
      let event;
      try {
        event = JSON.parse(message.data);
      } catch (err) {
        console.warn("ignoring a malformed event", err);
        return;
      }
      if (event.type === "ws.connected") {
        state.socketRetryMs = 1000;
        setSocketStatus("live", "success");
        window.LHDesk.onSocketOpen(); // a new socket has no subscriptions: the desk's codes again
        return;
      }
      if (event.type === "quotes.snapshot") {
        (event.payload.quotes || []).forEach(window.LHDesk.onQuote); // the desk's quotes, not the events list
        return;
      }
      if (event.type === "bars.1m" || event.type === "ws.subscribed" || event.type === "ws.error") return;
      addEvent(event);
    });
    socket.addEventListener("close", (closed) => {
      if (state.socket !== socket) return; // replaced or logged out
      state.socket = null;
      if (closed.code === 4401) {
        logout("Your session has ended: please log in again.");
        return;
      }
      setSocketStatus("reconnecting", "secondary");
      state.socketTimer = setTimeout(connectEvents, state.socketRetryMs);
      state.socketRetryMs = Math.min(state.socketRetryMs * 2, 30000);
      refreshOrders(); // events missed while disconnected are in the orders table
      refreshAccount();
      refreshBacktests();
      refreshInstances();
    });
  }

  function addEvent(event) {
    const list = $("events");
    $("events-empty")?.remove();
    const p = event.payload || {};
    let summary;
    if (event.type === "risk.order.denied") {
      summary = `${fmt(p.ts_code)} ${fmt(p.side)} ${fmt(p.qty)} @ ${p.price ?? "market"} · denied: ` +
        (p.reasons || []).map((r) => r.message).join("; ");
    } else if (event.type.startsWith("order.")) {
      summary = `${fmt(p.ts_code)} ${fmt(p.side)} ${fmt(p.qty)} @ ${p.price ?? "market"} · ${fmt(p.status)}` +
        (p.filled_qty ? ` · filled ${p.filled_qty} @ ${fmt(p.avg_fill_price)}` : "") + (p.reason ? ` · ${p.reason}` : "");
    } else if (event.type.startsWith("trade.")) {
      summary = `${fmt(p.ts_code)} ${fmt(p.side)} ${fmt(p.qty)} @ ${fmt(p.price)} = ${fmt(p.amount)} CNY`;
    } else if (event.type === "backtest.progress") {
      summary = `backtest ${fmt(p.backtest_id)} ${p.percent}% (${p.days_done}/${p.days} days)` +
        (p.eta_s != null ? ` · about ${Math.round(p.eta_s)} s left` : "");
    } else if (event.type.startsWith("backtest.")) {
      summary = `backtest ${fmt(p.backtest_id)} ${fmt(p.status)}` +
        (p.total_return != null ? ` · return ${fmtPercent(p.total_return) ?? p.total_return}` : "") +
        (p.error ? ` · ${p.error}` : "");
    } else if (event.type === "strategy.instance.bar") {
      summary = `instance ${fmt(p.instance_id).slice(0, 8)} · bar ${fmt(p.bar_date)} · equity ${groupDigits(p.equity)} CNY` +
        ` · ${fmt(p.orders_sent)} orders`;
    } else if (event.type.startsWith("strategy.instance.")) {
      summary = `instance ${fmt(p.instance_id).slice(0, 8)} (${fmt(p.strategy)}, ${fmt(p.mode)}) · ${fmt(p.state)}` +
        (p.error ? ` · ${p.error}` : "");
    } else {
      summary = JSON.stringify(p);
    }
    const item = el(
      "li",
      { class: "list-group-item d-flex gap-2 align-items-baseline" },
      el("span", { class: "small text-body-secondary", text: fmtTime(event.occurred_at) }),
      el("span", { class: "badge text-bg-dark event-type", text: event.type }),
      el("span", { class: "small", text: summary }),
    );
    if (event.type === "backtest.finished" && p.status === "succeeded") {
      const button = el("button", { class: "btn btn-sm btn-outline-primary ms-auto", text: "report" });
      button.addEventListener("click", () => openReport(p.backtest_id));
      item.append(button);
    }
    // A running backtest's progress updates one line (once a second) instead of filling the list.
    if (event.type === "backtest.progress" || event.type === "backtest.finished") {
      document.getElementById(`progress-${p.backtest_id}`)?.remove();
      if (event.type === "backtest.progress") item.id = `progress-${p.backtest_id}`;
    }
    // A replay sends a bar event per day: one line per instance, its latest bar.
    if (event.type === "strategy.instance.bar") {
      document.getElementById(`bar-${p.instance_id}`)?.remove();
      item.id = `bar-${p.instance_id}`;
    }
    list.prepend(item);
    while (list.children.length > MAX_EVENTS) list.lastElementChild.remove();
    if (event.type.startsWith("order.") || event.type.startsWith("trade.")) {
      scheduleOrdersRefresh();
      scheduleAccountRefresh();
      if (p.strategy_instance_id && p.strategy_instance_id === state.selectedInstance) scheduleDetailRefresh();
    }
    window.LHDesk.onEvent(event.type);
    if (event.type.startsWith("backtest.")) onBacktestEvent(event.type, p);
    if (event.type.startsWith("strategy.instance.")) onInstanceEvent(event.type, p);
  }

  // The report is a self-contained HTML page whose charts are inline scripts. The desk's policy refuses those (and a
  // blob: page would inherit it), and a plain link carries no Authorization header: the gateway gives a short-lived
  // link for this one report, served with its own sandboxed policy (gateway/reports.py). The tab is opened at the
  // click, so no popup blocker stops it, and pointed at the link once it is there.
  async function openReport(backtestId) {
    const tab = window.open("about:blank", "_blank");
    if (tab) tab.opener = null;
    const result = await api(`/api/v1/backtests/${encodeURIComponent(backtestId)}/report-link`, { method: "POST" });
    if (!result.ok || !result.data || typeof result.data.url !== "string") {
      if (tab) tab.close();
      showBacktestsError(`Report ${backtestId}: ${errorText(result)}`);
      return;
    }
    if (tab) tab.location.replace(result.data.url);
    else window.open(result.data.url, "_blank", "noopener");
  }

  // Fills arrive in bursts: one table reload per burst.
  let refreshSoon = null;
  function scheduleOrdersRefresh() {
    clearTimeout(refreshSoon);
    refreshSoon = setTimeout(refreshOrders, 300);
  }

  // --- account: cash and positions -------------------------------------------------------------------------

  // Money arrives as exact decimal strings ("10000000.00"): it is shown as given, with thousands separators
  // inserted into the integer part. No arithmetic: a float would not keep the fen.
  function groupDigits(value) {
    if (value === undefined || value === null || value === "") return "—";
    const text = String(value);
    const match = /^([+-]?)(\d+)(\.\d+)?$/.exec(text);
    if (!match) return text;
    return match[1] + match[2].replace(/\B(?=(\d{3})+(?!\d))/g, ",") + (match[3] || "");
  }

  function money(value, currency) {
    return groupDigits(value) + (value === undefined || value === null || value === "" ? "" : ` ${currency || "CNY"}`);
  }

  async function refreshAccount() {
    if (!state.session) return;
    const seq = ++state.accountSeq;
    const [cash, positions] = await Promise.all([api("/api/v1/account"), api("/api/v1/positions")]);
    if (!state.session || seq !== state.accountSeq) return; // logged out, or a later refresh overtook this one
    window.LHDesk.renderAccount(cash, positions);
  }

  // Fills arrive in bursts, as for the orders table: one reload per burst.
  let accountSoon = null;
  function scheduleAccountRefresh() {
    clearTimeout(accountSoon);
    accountSoon = setTimeout(refreshAccount, 300);
  }

  // --- backtests -------------------------------------------------------------------------------------------

  function canRunBacktests() {
    return !!state.session && (state.session.role === "trader" || state.session.role === "admin");
  }

  function showBacktestsError(message) {
    const box = $("backtests-error");
    box.textContent = message || "";
    show(box, !!message);
  }

  // The backtest panel and the Strategies page build their parameter forms from the same catalogue and code: each
  // form's elements are named by its prefix (backtest-strategy, backtest-params, backtest-param-fast; instance-...).
  const PARAM_FORMS = ["backtest", "instance"];

  async function loadStrategies() {
    const result = await api("/api/v1/strategies");
    if (!state.session) return;
    if (!result.ok || !Array.isArray(result.data)) {
      for (const prefix of PARAM_FORMS) {
        $(`${prefix}-result`).replaceChildren(
          el("div", { class: "alert alert-danger mb-0", role: "alert", text: `Could not load strategies: ${errorText(result)}` }),
        );
      }
      return;
    }
    state.strategies.clear();
    for (const s of result.data) state.strategies.set(s.name, s);
    for (const prefix of PARAM_FORMS) {
      const select = $(`${prefix}-strategy`);
      const previous = select.value;
      select.replaceChildren(
        ...result.data.map((s) => el("option", { value: s.name, text: s.title ? `${s.name} · ${s.title}` : s.name })),
      );
      if (state.strategies.has(previous)) select.value = previous;
      else if (state.strategies.has("dual_ma")) select.value = "dual_ma";
      renderParams(prefix);
    }
  }

  // Pydantic writes enums as $ref into $defs and an Optional[X] as anyOf [X, null]: one level of each is resolved.
  function resolveSchema(node, defs) {
    let out = node || {};
    const ref = out.$ref || (Array.isArray(out.allOf) && out.allOf.length === 1 && out.allOf[0].$ref);
    if (typeof ref === "string" && ref.startsWith("#/$defs/")) {
      const { $ref, allOf, ...rest } = out;
      out = { ...(defs[ref.slice("#/$defs/".length)] || {}), ...rest };
    }
    return out;
  }

  // One input per property. A number that may also be given as a string (a decimal such as cash_reserve) is shown as
  // a number but sent as typed, so "0.1" reaches the strategy exactly.
  function paramSpec(name, raw, defs, required) {
    const prop = resolveSchema(raw, defs);
    let kind = prop.type;
    let bounds = prop;
    let sendAsText = false;
    if (!kind && Array.isArray(prop.anyOf)) {
      const branches = prop.anyOf.map((b) => resolveSchema(b, defs)).filter((b) => b.type && b.type !== "null");
      const numeric = branches.find((b) => b.type === "number" || b.type === "integer");
      const enumerated = branches.find((b) => Array.isArray(b.enum));
      if (numeric) {
        kind = numeric.type;
        bounds = numeric;
        sendAsText = branches.some((b) => b.type === "string");
      } else if (enumerated) {
        kind = enumerated.type;
        bounds = enumerated;
      } else {
        kind = (branches[0] && branches[0].type) || "string";
      }
    }
    let choices = null;
    if (Array.isArray(prop.enum)) choices = prop.enum;
    else if (Array.isArray(bounds.enum)) choices = bounds.enum;
    else if (prop.const !== undefined) choices = [prop.const];
    return {
      name,
      kind,
      sendAsText,
      choices,
      required,
      title: prop.title || name,
      description: prop.description || "",
      default: prop.default,
      minimum: bounds.minimum,
      maximum: bounds.maximum,
      exclusiveMinimum: bounds.exclusiveMinimum,
      exclusiveMaximum: bounds.exclusiveMaximum,
    };
  }

  function boundsText(spec) {
    const parts = [];
    if (spec.minimum !== undefined) parts.push(`≥ ${spec.minimum}`);
    if (spec.exclusiveMinimum !== undefined) parts.push(`> ${spec.exclusiveMinimum}`);
    if (spec.maximum !== undefined) parts.push(`≤ ${spec.maximum}`);
    if (spec.exclusiveMaximum !== undefined) parts.push(`< ${spec.exclusiveMaximum}`);
    return parts.join(", ");
  }

  function renderParams(prefix) {
    const container = $(`${prefix}-params`);
    const strategy = state.strategies.get($(`${prefix}-strategy`).value);
    $(`${prefix}-strategy-description`).textContent = strategy ? strategy.description || "" : "";
    if (!strategy) {
      container.replaceChildren();
      return;
    }
    const schema = strategy.parameters || {};
    const defs = schema.$defs || schema.definitions || {};
    const required = new Set(Array.isArray(schema.required) ? schema.required : []);
    const specs = Object.entries(schema.properties || {}).map(([name, prop]) =>
      paramSpec(name, prop, defs, required.has(name)),
    );
    state.paramSpecs[prefix] = specs;
    const fields = specs.map((spec) => paramField(spec, prefix));
    container.replaceChildren(
      el("div", { class: "form-label fw-semibold small text-body-secondary mb-1", text: "Parameters" }),
      fields.length
        ? el("div", { class: "row g-2 backtest-params" }, ...fields)
        : el("p", { class: "small text-body-secondary", text: "This strategy takes no parameters." }),
    );
  }

  function paramField(spec, prefix) {
    const id = `${prefix}-param-${spec.name}`;
    const common = { id, class: "form-control form-control-sm", "data-field": `params.${spec.name}`, "data-param": spec.name };
    let input;
    if (spec.choices) {
      input = el(
        "select",
        { ...common, class: "form-select form-select-sm" },
        ...spec.choices.map((c) => el("option", { value: String(c), text: String(c) })),
      );
      if (spec.default !== undefined) input.value = String(spec.default);
    } else if (spec.kind === "boolean") {
      input = el("input", { ...common, class: "form-check-input", type: "checkbox" });
      input.checked = spec.default === true;
    } else if (spec.kind === "integer" || spec.kind === "number") {
      input = el("input", {
        ...common,
        type: "number",
        step: spec.kind === "integer" ? "1" : "any",
        min: spec.minimum ?? spec.exclusiveMinimum,
        max: spec.maximum ?? spec.exclusiveMaximum,
        value: spec.default === undefined || spec.default === null ? undefined : String(spec.default),
      });
    } else {
      input = el("input", {
        ...common,
        type: "text",
        autocomplete: "off",
        value: spec.default === undefined || spec.default === null ? undefined : String(spec.default),
      });
    }
    if (spec.required) input.required = true;
    const helpText = [spec.description, boundsText(spec), spec.default !== undefined ? `default ${spec.default}` : ""]
      .filter(Boolean)
      .join(" · ");
    const label = el(
      "label",
      { class: spec.kind === "boolean" ? "form-check-label small" : "form-label small mb-0", for: id, text: spec.title },
      el("span", { class: "mono text-body-secondary ms-1", text: spec.name }),
      spec.required ? el("span", { class: "text-danger ms-1", title: "required", text: "*" }) : null,
    );
    const help = el("div", { class: "form-text small", id: `${id}-help`, text: helpText });
    input.setAttribute("aria-describedby", help.id);
    if (spec.kind === "boolean") {
      return el("div", { class: "col-sm-6" }, el("div", { class: "form-check" }, input, label), help);
    }
    return el("div", { class: "col-sm-6" }, label, input, help);
  }

  // Values are read as typed; the service validates them against the schema and names the field when it refuses.
  function readParams(prefix) {
    const params = {};
    const problems = [];
    for (const spec of state.paramSpecs[prefix] || []) {
      const input = $(`${prefix}-param-${spec.name}`);
      if (!input) continue;
      if (spec.kind === "boolean" && !spec.choices) {
        params[spec.name] = input.checked;
        continue;
      }
      if (input.validity && input.validity.badInput) {
        problems.push({ field: `params.${spec.name}`, message: "not a number" });
        continue;
      }
      const value = input.value.trim();
      if (value === "") continue; // the strategy's default applies (or the service says the field is required)
      if (spec.choices) {
        params[spec.name] = spec.choices.find((c) => String(c) === value) ?? value;
      } else if (spec.kind === "integer" && /^[+-]?\d+$/.test(value)) {
        params[spec.name] = Number.parseInt(value, 10);
      } else if (spec.kind === "number" && !spec.sendAsText && Number.isFinite(Number(value))) {
        params[spec.name] = Number(value);
      } else {
        params[spec.name] = value;
      }
    }
    return { params, problems };
  }

  function parseSymbols(text) {
    return text
      .split(/[\s,，;；]+/)
      .map((s) => s.trim().toUpperCase())
      .filter(Boolean);
  }

  // A datalist completes the whole value, so each suggestion repeats the codes already typed and adds one.
  function suggestSymbols() {
    const input = $("backtest-symbols");
    const text = input.value;
    const cut = Math.max(text.lastIndexOf(","), text.lastIndexOf("，"));
    const prefix = cut >= 0 ? `${text.slice(0, cut + 1).trimEnd()} ` : "";
    const partial = text.slice(cut + 1).trim().toUpperCase();
    const chosen = new Set(parseSymbols(text.slice(0, cut + 1)));
    const options = [];
    for (const s of state.securities.values()) {
      if (chosen.has(s.ts_code)) continue;
      if (partial && !s.ts_code.startsWith(partial) && !(s.name || "").includes(partial)) continue;
      options.push(el("option", { value: prefix + s.ts_code, label: `${s.name || ""}${s.is_st ? " (ST)" : ""}` }));
      if (options.length >= 50) break;
    }
    $("backtest-securities").replaceChildren(...options);
    const codes = parseSymbols(text);
    const unknown = state.securities.size ? codes.filter((c) => !state.securities.has(c)) : [];
    $("backtest-symbols-count").textContent =
      `${codes.length} symbol${codes.length === 1 ? "" : "s"}` + (unknown.length ? ` · not in the market: ${unknown.join(", ")}` : "");
  }

  function clearFieldErrors(formId) {
    for (const node of $(formId).querySelectorAll(".is-invalid")) node.classList.remove("is-invalid");
    for (const node of $(formId).querySelectorAll(".invalid-feedback")) node.remove();
  }

  // details[].field is the request's path (params.fast, universe.ts_codes, initial_cash): the input carrying that
  // path in data-field (or a parent of it) is marked and gets the message under it.
  function markFieldErrors(formId, details) {
    const inputs = Array.from($(formId).querySelectorAll("[data-field]"));
    for (const detail of details) {
      const field = String(detail.field || "");
      const input = inputs.find((node) =>
        node.dataset.field.split(" ").some((name) => field === name || field.startsWith(`${name}.`)),
      );
      if (!input) continue;
      input.classList.add("is-invalid");
      input.after(el("div", { class: "invalid-feedback", text: detail.message || "" }));
    }
  }

  function renderRefusal(result, details) {
    const box = el("div", { class: "alert alert-danger mb-0", role: "alert" }, el("strong", { text: errorText(result) }));
    if (details.length) {
      box.append(el("ul", { class: "mb-0 mt-2" }, ...details.map((d) => el("li", { text: `${d.field}: ${d.message}` }))));
    }
    if (result.requestId) box.append(el("div", { class: "small text-body-secondary mt-2 mono", text: `request ${result.requestId}` }));
    return box;
  }

  async function submitBacktest(event) {
    event.preventDefault();
    const out = $("backtest-result");
    clearFieldErrors("backtest-form");
    const { params, problems } = readParams("backtest");
    suggestSymbols(); // the count under the field follows what is sent
    if (problems.length) {
      markFieldErrors("backtest-form", problems);
      const result = { status: 0, data: { code: "invalid_input", message: "fix the marked fields" } };
      out.replaceChildren(renderRefusal(result, problems));
      return;
    }
    const request = {
      strategy: $("backtest-strategy").value,
      params,
      universe: { ts_codes: parseSymbols($("backtest-symbols").value) },
      start: $("backtest-start").value,
      end: $("backtest-end").value,
      // Money travels as a decimal string, as for orders.
      initial_cash: $("backtest-cash").value.trim(),
      benchmark: null,
    };
    $("backtest-submit").disabled = true;
    out.replaceChildren(el("div", { class: "text-body-secondary small", text: "Sending…" }));
    try {
      const result = await api("/api/v1/backtests", { method: "POST", json: request });
      if (!state.session) return;
      if (result.ok) {
        out.replaceChildren(
          el(
            "div",
            { class: "alert alert-success mb-0", role: "status" },
            el("strong", { text: "Backtest queued. " }),
            el("span", { class: "mono", text: fmt(result.data && result.data.backtest_id) }),
          ),
        );
        refreshBacktests();
        return;
      }
      const details = result.data && Array.isArray(result.data.details) ? result.data.details : [];
      markFieldErrors("backtest-form", details.length ? details : messageAsDetail(result.data));
      out.replaceChildren(renderRefusal(result, details));
    } finally {
      $("backtest-submit").disabled = false;
    }
  }

  // Some refusals (unknown_strategy) carry no details, only a message that starts with the field: "strategy: ...".
  function messageAsDetail(data) {
    const match = data && typeof data.message === "string" && /^([\w.]+): (.*)$/s.exec(data.message);
    return match ? [{ field: match[1], message: match[2] }] : [];
  }

  async function refreshBacktests() {
    if (!state.session) return;
    clearTimeout(state.backtestsTimer);
    const result = await api(`/api/v1/backtests?limit=${BACKTESTS_LIMIT}`);
    if (!state.session) return;
    if (!result.ok) {
      showBacktestsError(`Could not load backtests: ${errorText(result)}`);
      return;
    }
    showBacktestsError("");
    const runs = Array.isArray(result.data) ? result.data : [];
    const canRun = canRunBacktests();
    $("backtests").replaceChildren(...runs.map((b) => backtestRow(b, canRun)));
    if (!runs.length) {
      $("backtests").append(el("tr", {}, el("td", { colspan: "8", class: "text-body-secondary small", text: "No backtests yet." })));
    }
    for (const id of state.backtestProgress.keys()) {
      if (!runs.some((b) => b.backtest_id === id && b.status === "running")) state.backtestProgress.delete(id);
    }
    $("backtests-updated").textContent = `updated ${new Date().toLocaleTimeString("zh-CN", { hour12: false })}`;
    // Events are the fast path; while a run is open this poll catches the ones missed (e.g. a socket reconnecting).
    if (runs.some((b) => BACKTEST_ACTIVE.has(b.status))) {
      state.backtestsTimer = setTimeout(refreshBacktests, BACKTESTS_POLL_MS);
    }
  }

  function paramsText(b) {
    const params = b.params || {};
    if (Array.isArray(params.sleeves)) return `${params.sleeves.length} sleeves`;
    return Object.entries(params)
      .map(([k, v]) => `${k}=${typeof v === "object" ? JSON.stringify(v) : v}`)
      .join(" ");
  }

  function fmtPercent(value) {
    const number = Number(value);
    if (value === undefined || value === null || value === "" || !Number.isFinite(number)) return null;
    return `${number > 0 ? "+" : ""}${(number * 100).toFixed(2)}%`;
  }

  function fmtMoney(value) {
    const number = Number(value);
    if (value === undefined || value === null || value === "" || !Number.isFinite(number)) return "—";
    return number.toLocaleString("zh-CN", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  }

  function backtestStatusClass(status) {
    return (
      {
        succeeded: "text-bg-success",
        running: "text-bg-primary",
        queued: "text-bg-secondary",
        failed: "text-bg-danger",
        cancelled: "text-bg-light",
      }[status] || "text-bg-light"
    );
  }

  function progressBar(backtestId) {
    const p = state.backtestProgress.get(backtestId);
    const percent = p ? Math.max(0, Math.min(100, Number(p.percent) || 0)) : 0;
    const bar = el("div", {
      class: "progress-bar progress-bar-striped progress-bar-animated",
      id: `backtest-bar-${backtestId}`,
    });
    bar.style.width = `${percent}%`; // through the CSSOM: the page's CSP refuses style attributes
    const wrap = el(
      "div",
      {
        class: "progress backtest-progress mt-1",
        role: "progressbar",
        "aria-label": "backtest progress",
        "aria-valuemin": "0",
        "aria-valuemax": "100",
        "aria-valuenow": String(percent),
      },
      bar,
    );
    const caption = el("div", { class: "small text-body-secondary", id: `backtest-bar-text-${backtestId}`, text: progressText(p) });
    return [wrap, caption];
  }

  function progressText(p) {
    if (!p) return "starting…";
    return `${fmt(p.percent)}% · ${fmt(p.days_done)}/${fmt(p.days)} days` + (p.eta_s != null ? ` · ~${Math.round(p.eta_s)} s left` : "");
  }

  // Progress arrives about once a second: the running row's bar is moved in place rather than reloading the table.
  function updateProgressBar(p) {
    const bar = document.getElementById(`backtest-bar-${p.backtest_id}`);
    if (!bar) return false;
    const percent = Math.max(0, Math.min(100, Number(p.percent) || 0));
    bar.style.width = `${percent}%`;
    bar.parentElement.setAttribute("aria-valuenow", String(percent));
    const caption = document.getElementById(`backtest-bar-text-${p.backtest_id}`);
    if (caption) caption.textContent = progressText(p);
    return true;
  }

  function backtestRow(b, canRun) {
    const summary = b.summary || {};
    const returnText = fmtPercent(summary.total_return);
    const returnClass = returnText ? (Number(summary.total_return) > 0 ? "return-up" : Number(summary.total_return) < 0 ? "return-down" : "") : "";
    const codes = Array.isArray(b.ts_codes) ? b.ts_codes : [];
    const universeLabel = b.universe && b.universe.label ? String(b.universe.label) : codes.join(", ");

    const statusCell = el(
      "td",
      {},
      el("span", { class: `badge ${backtestStatusClass(b.status)}`, text: fmt(b.status) }),
      b.cancel_requested && BACKTEST_ACTIVE.has(b.status) ? el("span", { class: "small text-body-secondary ms-1", text: "cancelling…" }) : null,
    );
    if (b.status === "running") statusCell.append(...progressBar(b.backtest_id));
    if (b.error) {
      // A strategy that raised leaves a traceback: its last line says what went wrong, the rest is in the tooltip.
      const lines = String(b.error).split("\n").map((line) => line.trim()).filter(Boolean);
      const error = String(b.error);
      statusCell.append(el("div", {
        class: "small text-danger text-truncate backtest-error",
        title: error.length > 2000 ? `…${error.slice(-2000)}` : error,
        text: lines[lines.length - 1] || "",
      }));
    }

    const actions = el("td", { class: "text-end text-nowrap" });
    if (b.status === "succeeded") {
      actions.append(el("button", {
        class: "btn btn-outline-primary btn-sm",
        type: "button",
        text: "Report",
        onclick: () => openReport(b.backtest_id),
      }));
    }
    if (canRun && BACKTEST_ACTIVE.has(b.status) && !b.cancel_requested) {
      actions.append(el("button", {
        class: "btn btn-outline-danger btn-sm ms-1",
        type: "button",
        text: "Cancel",
        onclick: () => cancelBacktest(b.backtest_id),
      }));
    }

    return el(
      "tr",
      { id: `backtest-row-${b.backtest_id}` },
      el("td", { class: "small text-nowrap", text: fmtTime(b.created_at), title: `backtest ${fmt(b.backtest_id)}` }),
      el(
        "td",
        {},
        el("div", { text: b.name ? `${fmt(b.name)} · ${fmt(b.strategy)}` : fmt(b.strategy) }),
        el("div", { class: "small text-body-secondary mono", text: paramsText(b) }),
      ),
      el("td", { class: "text-end", text: String(codes.length), title: universeLabel.slice(0, 1000) || undefined }),
      el("td", { class: "small text-nowrap", text: `${fmt(b.start)} → ${fmt(b.end)}` }),
      statusCell,
      el("td", { class: `text-end ${returnClass}`, text: returnText || "—" }),
      el("td", { class: "text-end", text: fmtMoney(summary.final_equity) }),
      actions,
    );
  }

  async function cancelBacktest(backtestId) {
    const result = await api(`/api/v1/backtests/${encodeURIComponent(backtestId)}/cancel`, { method: "POST" });
    if (!result.ok) showBacktestsError(`Cancel ${backtestId}: ${errorText(result)}`);
    refreshBacktests();
  }

  function onBacktestEvent(type, p) {
    if (!p || !p.backtest_id) return;
    if (type === "backtest.progress") {
      state.backtestProgress.set(p.backtest_id, p);
      if (updateProgressBar(p)) return; // the row already shows it running
    } else if (type === "backtest.finished") {
      state.backtestProgress.delete(p.backtest_id);
    }
    scheduleBacktestsRefresh();
  }

  let backtestsSoon = null;
  function scheduleBacktestsRefresh() {
    clearTimeout(backtestsSoon);
    backtestsSoon = setTimeout(refreshBacktests, 300);
  }

  // --- strategies: live strategy instances -------------------------------------------------------------------

  // The reports' charting library (served from this origin by the gateway), loaded the first time a chart is drawn:
  // the desk does not pay for a megabyte it does not use.
  const ECHARTS_URL = "/static/vendor/echarts/echarts.min.js";
  const INSTANCES_POLL_MS = 5000;
  const DETAIL_REFRESH_MS = 1000;
  const DETAIL_ROWS = 200;
  // What the lifecycle allows from each state (services/strategy/lifecycle.py); the service still decides.
  const INSTANCE_ACTIONS = {
    created: ["start", "stop"],
    running: ["pause", "stop"],
    paused: ["resume", "stop"],
    failed: ["stop"],
    stopped: [],
  };
  const ACTION_STYLE = {
    start: "btn-outline-success",
    resume: "btn-outline-success",
    pause: "btn-outline-warning",
    stop: "btn-outline-danger",
  };

  function canTrade() {
    return canRunBacktests();
  }

  // The pages, in the nav's order: each is a section "<name>-view" and a nav link "#<name>". Desk and strategies are
  // this file's and desk.js's; every other page is a file of its own in static/pages/, which registers itself as
  // window.LHPages[name] = {start(), stop(), show(), hide(), available()} (each optional): start after login, stop at
  // logout, show/hide as the page is routed to and away from, available: whether the signed-in user may see it. A page
  // whose file did not register has no nav link.
  const PAGES = ["desk", "market", "strategies", "backtests", "risk", "data", "alerts", "admin"];
  window.LHPages = window.LHPages || {};

  // A page may be for some roles only: it says so with available() (read after log-in); its nav link stays hidden and
  // its address routes to the desk for everyone else (the API refuses them as well).
  function pageAvailable(name) {
    if (name === "desk" || name === "strategies") return true;
    const page = window.LHPages[name];
    return Boolean(page) && (typeof page.available !== "function" || Boolean(state.session && page.available()));
  }

  function eachPage(method) {
    for (const name of PAGES) {
      const page = window.LHPages[name];
      if (page && typeof page[method] === "function") {
        try {
          page[method]();
        } catch (error) {
          console.error(`page ${name}: ${method} failed`, error); // one page's fault leaves the others working
        }
      }
    }
  }

  function showPage(name) {
    for (const page of PAGES) {
      const active = page === name;
      const view = $(`${page}-view`);
      const link = $(`nav-${page}`);
      if (view) show(view, active);
      if (link) {
        show(link.parentElement, pageAvailable(page));
        link.classList.toggle("active", active);
        if (active) link.setAttribute("aria-current", "page");
        else link.removeAttribute("aria-current");
      }
      const module = window.LHPages[page];
      const method = active ? "show" : "hide";
      if (module && typeof module[method] === "function" && state.session) module[method]();
    }
    if (name === "strategies" && state.session) {
      refreshInstances();
      if (state.chart) state.chart.resize(); // drawn while hidden, it had no size
    }
  }

  // The page the address names ("#market", or "#market/600000.SH": the part after "/" is the page's own), else the desk.
  function currentPage() {
    const name = location.hash.replace(/^#/, "").split("/")[0];
    return PAGES.includes(name) && pageAvailable(name) ? name : "desk";
  }

  // Decimal strings ("100250.5", "-3.20") as scaled BigInts: a P&L is a difference of two equities, kept exact.
  function parseDecimal(value) {
    const match = /^([+-]?)(\d+)(?:\.(\d+))?$/.exec(String(value ?? ""));
    if (!match) return null;
    const fraction = match[3] || "";
    const units = BigInt(match[2] + fraction);
    return { units: match[1] === "-" ? -units : units, scale: fraction.length };
  }

  function decimalDiff(a, b) {
    const x = parseDecimal(a);
    const y = parseDecimal(b);
    if (!x || !y) return null;
    const scale = Math.max(x.scale, y.scale, 2);
    const diff = x.units * 10n ** BigInt(scale - x.scale) - y.units * 10n ** BigInt(scale - y.scale);
    const abs = diff < 0n ? -diff : diff;
    const digits = abs.toString().padStart(scale + 1, "0");
    const text = `${digits.slice(0, -scale)}.${digits.slice(-scale)}`;
    return `${diff < 0n ? "-" : diff > 0n ? "+" : ""}${text}`;
  }

  function instanceStateClass(status) {
    return (
      {
        running: "text-bg-primary",
        paused: "text-bg-warning",
        created: "text-bg-secondary",
        stopped: "text-bg-light",
        failed: "text-bg-danger",
      }[status] || "text-bg-light"
    );
  }

  function showInstancesError(message) {
    $("instances-error").textContent = message || "";
    show($("instances-error"), !!message);
  }

  // An action's refusal stays until the next action: the list refresh that follows it must not wipe it.
  function showActionError(message) {
    $("instance-action-error").textContent = message || "";
    show($("instance-action-error"), !!message);
  }

  function instancePath(instanceId, tail = "") {
    return `/api/v1/strategy-instances/${encodeURIComponent(instanceId)}${tail}`;
  }

  async function refreshInstances() {
    if (!state.session) return;
    clearTimeout(state.instancesTimer);
    const seq = ++state.instancesSeq;
    const result = await api("/api/v1/strategy-instances");
    if (!state.session || seq !== state.instancesSeq) return;
    if (!result.ok || !Array.isArray(result.data)) {
      showInstancesError(`Could not load strategy instances: ${errorText(result)}`);
      return;
    }
    const instances = result.data;
    // Equity and today's P&L from each one's performance, its positions from its sleeve.
    const figures = await Promise.all(
      instances.map((i) => Promise.all([api(instancePath(i.instance_id, "/performance")), api(instancePath(i.instance_id, "/sleeve"))])),
    );
    if (!state.session || seq !== state.instancesSeq) return;
    showInstancesError("");
    const allowed = canTrade();
    $("instances").replaceChildren(
      ...instances.map((instance, n) => instanceRow(instance, figures[n][0], figures[n][1], allowed)),
    );
    if (!instances.length) {
      $("instances").append(el("tr", {}, el("td", { colspan: "9", class: "text-body-secondary small", text: "No strategy instances yet." })));
    }
    state.instances = new Map(instances.map((i) => [i.instance_id, i]));
    if (state.selectedInstance && !state.instances.has(state.selectedInstance)) selectInstance(null);
    // A watcher who is not the owner gets no bar events: the selected instance's detail follows this poll instead.
    const selected = state.instances.get(state.selectedInstance);
    if (selected && selected.state === "running") scheduleDetailRefresh();
    $("instances-updated").textContent = `updated ${new Date().toLocaleTimeString("zh-CN", { hour12: false })}`;
    $("instances").dataset.loads = String(Number($("instances").dataset.loads || 0) + 1); // for a watcher (or a test)
    // Events are the fast path (and only the owner gets them); this poll keeps a watcher's table moving.
    if (instances.some((i) => i.state === "running")) {
      state.instancesTimer = setTimeout(refreshInstances, INSTANCES_POLL_MS);
    }
  }

  function instanceRow(instance, performance, sleeve, allowed) {
    const id = instance.instance_id;
    const curve = performance.ok && performance.data && Array.isArray(performance.data.equity_curve) ? performance.data.equity_curve : [];
    const last = curve.length ? curve[curve.length - 1] : null;
    const pnl = curve.length >= 2 ? decimalDiff(curve[curve.length - 1].equity, curve[curve.length - 2].equity) : null;
    const pnlClass = pnl ? (pnl.startsWith("+") ? "return-up" : pnl.startsWith("-") ? "return-down" : "") : "";
    const positions = sleeve.ok && sleeve.data && Array.isArray(sleeve.data.positions) ? sleeve.data.positions : null;
    const held = positions ? positions.filter((p) => p.qty > 0) : [];
    const positionsText = positions === null ? `— (${errorText(sleeve)})` : held.length
      ? held.slice(0, 3).map((p) => `${p.ts_code} ${groupDigits(p.qty)}`).join(" · ") + (held.length > 3 ? ` · +${held.length - 3}` : "")
      : "none";

    const stateCell = el("td", {}, el("span", { class: `badge ${instanceStateClass(instance.state)}`, text: fmt(instance.state) }));
    if (instance.error) {
      const lines = String(instance.error).split("\n").map((line) => line.trim()).filter(Boolean);
      stateCell.append(el("div", { class: "small text-danger text-truncate instance-error", title: String(instance.error).slice(-2000), text: lines[lines.length - 1] || "" }));
    }
    const actions = el("td", { class: "text-end text-nowrap" });
    if (allowed) {
      for (const action of INSTANCE_ACTIONS[instance.state] || []) {
        actions.append(el("button", {
          class: `btn btn-sm ms-1 ${ACTION_STYLE[action]}`,
          type: "button",
          "data-action": action,
          text: action[0].toUpperCase() + action.slice(1),
          onclick: (event) => {
            event.stopPropagation(); // not a click on the row
            actOnInstance(id, action, event.currentTarget);
          },
        }));
      }
    }
    const row = el(
      "tr",
      { id: `instance-row-${id}`, "data-instance": id, "data-state": instance.state, class: id === state.selectedInstance ? "table-active" : undefined, onclick: () => selectInstance(id) },
      el("td", { class: "mono", text: `${id.slice(0, 8)}…`, title: `${id} · owner ${instance.owner}` }),
      el(
        "td",
        {},
        el("div", { text: fmt(instance.strategy) }),
        el("div", { class: "small text-body-secondary mono", text: paramsText(instance) }),
      ),
      stateCell,
      el("td", { text: fmt(instance.mode) }),
      el("td", { class: "text-end", text: groupDigits(instance.capital) }),
      el("td", { class: "text-end", id: `instance-equity-${id}`, text: last ? groupDigits(last.equity) : "—", title: last ? `on ${last.date}` : undefined }),
      el("td", { class: `text-end ${pnlClass}`, id: `instance-pnl-${id}`, text: pnl ? groupDigits(pnl) : "—" }),
      el("td", { class: "small", text: positionsText }),
      actions,
    );
    return row;
  }

  // The replay days of the create form, for Start: none given trades the platform's own clock.
  function readReplay() {
    const start = $("instance-replay-start").value;
    const end = $("instance-replay-end").value;
    if (!start && !end) return { replay: null };
    if (!start || !end) {
      return { problem: { field: start ? "replay.end" : "replay.start", message: "a replay needs both its first and last day" } };
    }
    const pace = $("instance-replay-pace").value.trim();
    if (pace === "") return { replay: { start, end } };
    const daysPerSecond = Number(pace);
    if (!/^[0-9]*\.?[0-9]+$/.test(pace) || !(daysPerSecond > 0)) {
      return { problem: { field: "replay.days_per_second", message: "a pace is a positive number of days per second" } };
    }
    return { replay: { start, end, days_per_second: daysPerSecond } };
  }

  async function actOnInstance(instanceId, action, button) {
    let json;
    if (action === "start" && state.replayClock !== false) {
      const { replay, problem } = readReplay();
      if (problem) {
        showActionError(`start: ${problem.field}: ${problem.message}`);
        return;
      }
      if (replay) json = { replay };
    }
    if (button) button.disabled = true;
    const result = await api(instancePath(instanceId, `/${action}`), { method: "POST", json });
    if (!state.session) return;
    if (result.ok) {
      showActionError("");
      if (json) state.replayClock = true;
      // Already selected: keep the curve, which the bar events of a fast replay may already be extending.
      if (state.selectedInstance === instanceId) scheduleDetailRefresh();
      else selectInstance(instanceId);
    } else {
      if (result.data && result.data.code === "not_replay") {
        // This platform trades the real clock: the replay days do not apply here. Start again to trade live bars.
        state.replayClock = false;
        show($("instance-replay"), false);
      }
      showActionError(`${action} ${instanceId}: ${errorText(result)}`);
    }
    refreshInstances();
  }

  async function submitInstance(event) {
    event.preventDefault();
    const out = $("instance-result");
    clearFieldErrors("instance-form");
    const { params, problems } = readParams("instance");
    const { problem } = readReplay();
    if (problem) problems.push(problem);
    if (problems.length) {
      markFieldErrors("instance-form", problems);
      out.replaceChildren(renderRefusal({ status: 0, data: { code: "invalid_input", message: "fix the marked fields" } }, problems));
      return;
    }
    const request = {
      strategy: $("instance-strategy").value,
      params,
      universe: { ts_codes: parseSymbols($("instance-codes").value) },
      capital: $("instance-capital").value.trim(), // money as a decimal string, as for orders
      mode: $("instance-mode").value,
      order_timing: $("instance-order-timing").value,
    };
    $("instance-submit").disabled = true;
    out.replaceChildren(el("div", { class: "text-body-secondary small", text: "Sending…" }));
    try {
      const result = await api("/api/v1/strategy-instances", { method: "POST", json: request });
      if (!state.session) return;
      if (result.ok && result.data) {
        out.replaceChildren(
          el(
            "div",
            { class: "alert alert-success mb-0", role: "status" },
            el("strong", { text: "Instance created. " }),
            el("span", { class: "mono", text: fmt(result.data.instance_id) }),
            " · press Start in the table to run it.",
          ),
        );
        selectInstance(result.data.instance_id);
        refreshInstances();
        return;
      }
      const details = result.data && Array.isArray(result.data.details) ? result.data.details : [];
      markFieldErrors("instance-form", details.length ? details : messageAsDetail(result.data));
      out.replaceChildren(renderRefusal(result, details));
    } finally {
      $("instance-submit").disabled = false;
    }
  }

  function selectInstance(instanceId) {
    state.selectedInstance = instanceId;
    state.curve = [];
    state.detailSeq += 1;
    for (const row of $("instances").querySelectorAll("tr[data-instance]")) {
      row.classList.toggle("table-active", row.dataset.instance === instanceId);
    }
    $("detail-title").textContent = instanceId || "—";
    $("detail-progress").textContent = "";
    show($("detail-empty"), !instanceId);
    show($("detail-body"), !!instanceId);
    show($("detail-error"), false);
    for (const id of ["detail-positions", "detail-fills", "detail-orders"]) $(id).replaceChildren();
    if (state.chart) state.chart.clear();
    if (instanceId) refreshDetail();
  }

  async function refreshDetail() {
    const instanceId = state.selectedInstance;
    if (!state.session || !instanceId) return;
    clearTimeout(state.detailTimer);
    state.detailTimer = null;
    const seq = ++state.detailSeq;
    const query = `strategy_instance_id=${encodeURIComponent(instanceId)}&limit=${DETAIL_ROWS}`;
    const [performance, sleeve, orders, trades] = await Promise.all([
      api(instancePath(instanceId, "/performance")),
      api(instancePath(instanceId, "/sleeve")),
      api(`/api/v1/orders?${query}`),
      api(`/api/v1/trades?${query}`),
    ]);
    if (!state.session || seq !== state.detailSeq) return; // another instance was selected meanwhile
    const errors = [];
    if (performance.ok && performance.data) {
      const p = performance.data;
      state.curve = (p.equity_curve || []).map((point) => [String(point.date), String(point.equity)]);
      state.curveCapital = p.capital;
      const progress = p.progress;
      $("detail-progress").textContent = progress
        ? `${fmt(p.state)} · replay ${fmt(progress.days_done)}/${fmt(progress.days)} days · ${fmt(progress.bar_date)} · ${fmt(progress.orders_sent)} orders`
        : `${fmt(p.state)} · ${p.days ?? state.curve.length} days`;
      drawChart();
    } else {
      errors.push(`performance: ${errorText(performance)}`);
    }
    if (sleeve.ok && sleeve.data) {
      const rows = (sleeve.data.positions || []).filter((p) => p.qty > 0);
      $("detail-positions").replaceChildren(...rows.map((p) => el(
        "tr",
        {},
        el("td", { class: "mono", text: fmt(p.ts_code) }),
        el("td", { class: "text-end", text: groupDigits(p.qty) }),
        el("td", { class: "text-end", text: groupDigits(p.sellable_qty) }),
        el("td", { class: "text-end", text: groupDigits(p.market_value) }),
      )));
      if (!rows.length) $("detail-positions").append(emptyRow(4, `No positions · cash ${groupDigits(sleeve.data.cash)} CNY`));
    } else {
      errors.push(`sleeve: ${errorText(sleeve)}`);
    }
    if (orders.ok && Array.isArray(orders.data)) {
      $("detail-orders").replaceChildren(...orders.data.map((o) => orderRow(o, false)));
      if (!orders.data.length) $("detail-orders").append(emptyRow(11, "No orders yet."));
    } else {
      errors.push(`orders: ${errorText(orders)}`);
    }
    if (trades.ok && Array.isArray(trades.data)) {
      $("detail-fills").replaceChildren(...trades.data.map(fillRow));
      if (!trades.data.length) $("detail-fills").append(emptyRow(6, "No fills yet."));
    } else {
      errors.push(`fills: ${errorText(trades)}`);
    }
    $("detail-error").textContent = errors.join(" · ");
    show($("detail-error"), errors.length > 0);
  }

  // A fill's time on the exchange's clock (a replayed 09:30 open is 09:30 whatever the browser's zone), short: the
  // table sits beside the positions.
  const MARKET_TIME = new Intl.DateTimeFormat("sv-SE", {
    timeZone: "Asia/Shanghai", year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit",
  });
  function fmtMarketTime(value) {
    const date = new Date(value);
    return Number.isNaN(date.getTime()) ? fmt(value) : MARKET_TIME.format(date);
  }

  function emptyRow(columns, text) {
    return el("tr", {}, el("td", { colspan: String(columns), class: "text-body-secondary small", text }));
  }

  function fillRow(t) {
    return el(
      "tr",
      { "data-trade": t.trade_id },
      el("td", { class: "small text-nowrap", text: fmtMarketTime(t.traded_at), title: fmtTime(t.traded_at) }),
      el("td", { class: "mono", text: fmt(t.ts_code) }),
      el("td", { class: `side-${t.side}`, text: fmt(t.side) }),
      el("td", { class: "text-end", text: groupDigits(t.qty) }),
      el("td", { class: "text-end", text: fmt(t.price) }),
      el("td", { class: "text-end", text: groupDigits(t.amount), title: `fees ${fmt(t.fees)} CNY` }),
    );
  }

  // Bars arrive many a second in a replay: the tables are reloaded at most once a second, the chart per frame.
  function scheduleDetailRefresh() {
    if (state.detailTimer) return;
    state.detailTimer = setTimeout(refreshDetail, DETAIL_REFRESH_MS);
  }

  function loadEcharts() {
    if (window.echarts) return Promise.resolve(window.echarts);
    if (!state.echartsLoading) {
      state.echartsLoading = new Promise((resolve, reject) => {
        const script = el("script", { src: ECHARTS_URL });
        script.addEventListener("load", () => resolve(window.echarts));
        script.addEventListener("error", () => {
          state.echartsLoading = null;
          reject(new Error(`${ECHARTS_URL} did not load`));
        });
        document.head.append(script);
      });
    }
    return state.echartsLoading;
  }

  let chartFrame = null;
  function drawChart() {
    if (chartFrame) return;
    chartFrame = requestAnimationFrame(async () => {
      chartFrame = null;
      let echarts;
      try {
        echarts = await loadEcharts();
      } catch (err) {
        $("chart-note").textContent = `The chart cannot be drawn: ${err.message}`;
        show($("chart-note"), true);
        return;
      }
      if (!state.selectedInstance) return;
      const node = $("instance-chart");
      if (!state.chart) state.chart = echarts.init(node, null, { renderer: "canvas" });
      const points = state.curve;
      node.dataset.points = String(points.length);
      $("chart-note").textContent = points.length ? "" : "No equity yet: the curve starts with the instance's first bar.";
      show($("chart-note"), !points.length);
      // The chart draws floats: a pixel is far coarser than a fen. The tables keep the exact figures.
      state.chart.setOption(
        {
          animation: false,
          grid: { left: 86, right: 64, top: 28, bottom: 60 },
          // Plain-text tooltips: the page's policy refuses the inline styles of HTML ones.
          tooltip: { trigger: "axis", renderMode: "richText" },
          xAxis: { type: "category", data: points.map((p) => p[0]), boundaryGap: false },
          yAxis: { type: "value", scale: true, name: "equity (CNY)" },
          dataZoom: [{ type: "inside" }, { type: "slider", height: 18, bottom: 12 }],
          series: [
            {
              name: "equity",
              type: "line",
              data: points.map((p) => Number(p[1])),
              showSymbol: points.length < 3,
              lineStyle: { width: 1.4 },
              areaStyle: { opacity: 0.12 },
              markLine: state.curveCapital
                ? { silent: true, symbol: "none", label: { formatter: "capital" }, data: [{ yAxis: Number(state.curveCapital) }] }
                : undefined,
            },
          ],
        },
        { notMerge: true },
      );
    });
  }

  // A bar event: the selected instance's curve gains (or corrects) its point, the row its equity.
  function onInstanceBar(p) {
    const equity = $(`instance-equity-${p.instance_id}`);
    if (equity) {
      equity.textContent = groupDigits(p.equity);
      equity.title = `on ${p.bar_date}`;
    }
    if (p.instance_id !== state.selectedInstance) return;
    const point = [String(p.bar_date), String(p.equity)];
    const last = state.curve[state.curve.length - 1];
    if (!last || last[0] < point[0]) state.curve.push(point);
    else if (last[0] === point[0]) state.curve[state.curve.length - 1] = point;
    else return; // an old bar redelivered: the curve has it
    drawChart();
    scheduleDetailRefresh();
  }

  let instancesSoon = null;
  function onInstanceEvent(type, p) {
    if (!p || !p.instance_id) return;
    if (type === "strategy.instance.bar") {
      onInstanceBar(p);
      return;
    }
    clearTimeout(instancesSoon);
    instancesSoon = setTimeout(refreshInstances, 300);
    if (p.instance_id === state.selectedInstance) scheduleDetailRefresh();
  }

  function clearStrategies() {
    clearTimeout(state.instancesTimer);
    clearTimeout(state.detailTimer);
    clearTimeout(instancesSoon);
    state.detailTimer = null;
    state.instancesSeq += 1;
    state.instances = new Map();
    selectInstance(null);
    if (state.chart) {
      state.chart.dispose();
      state.chart = null;
    }
    $("instances").replaceChildren();
    $("instance-result").replaceChildren();
    showInstancesError("");
    showActionError("");
    state.replayClock = null; // the next login may be to the same platform, but it is asked again
    show($("instance-replay"), true);
  }

  // The core the trader's desk (desk.js, loaded after this file) builds on.
  window.LH = {
    $, api, el, show, fmt, fmtTime, groupDigits, money, errorText, state, sendOnSocket, newClientOrderId,
    renderOrderResult, refreshOrders, refreshAccount, cancelOrder, OPEN_STATUSES, currentPage,
  };

  // --- wiring ----------------------------------------------------------------------------------------------

  document.addEventListener("DOMContentLoaded", () => {
    $("login-form").addEventListener("submit", login);
    $("logout").addEventListener("click", () => logout());
    $("lang-switch").addEventListener("click", () => window.LHI18n.setLang(window.LHI18n.lang === "zh" ? "en" : "zh"));
    window.LHDesk.describeSecurity();
    $("orders-refresh").addEventListener("click", refreshOrders);
    $("account-refresh").addEventListener("click", refreshAccount);
    $("events-clear").addEventListener("click", () => $("events").replaceChildren());
    $("backtest-form").addEventListener("submit", submitBacktest);
    $("backtest-strategy").addEventListener("change", () => {
      clearFieldErrors("backtest-form");
      renderParams("backtest");
    });
    $("backtest-symbols").addEventListener("input", suggestSymbols);
    $("backtests-refresh").addEventListener("click", refreshBacktests);
    $("instance-form").addEventListener("submit", submitInstance);
    $("instance-strategy").addEventListener("change", () => {
      clearFieldErrors("instance-form");
      renderParams("instance");
    });
    $("instances-refresh").addEventListener("click", refreshInstances);
    window.addEventListener("hashchange", () => state.session && showPage(currentPage()));
    window.addEventListener("resize", () => state.chart && state.chart.resize());
    state.session = loadSession();
    if (state.session) startDesk();
    else show($("login-view"), true);
  });
})();
