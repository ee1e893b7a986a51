// LiangHua web UI: log in, place orders, watch orders and live events. Plain JS, no build step, no CDN.
// Everything the server sends is put on the page with textContent, never as HTML.
"use strict";

(() => {
  const TOKEN_URL = "/api/v1/auth/token";
  const SESSION_KEY = "lianghua.session";
  const ORDERS_REFRESH_MS = 5000;
  const MAX_EVENTS = 200;
  const OPEN_STATUSES = new Set(["accepted", "submitted", "partially_filled"]);

  const $ = (id) => document.getElementById(id);
  const state = {
    session: null, // {token, username, role, accountId, expiresAt}
    socket: null,
    socketRetryMs: 1000,
    socketTimer: null,
    ordersTimer: null,
    expiryTimer: null,
    securities: new Map(),
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
    if (message) {
      $("login-error").textContent = message;
      show($("login-error"), true);
    }
  }

  async function startDesk() {
    const session = state.session;
    show($("login-view"), false);
    show($("login-error"), false);
    show($("desk-view"), true);
    show($("session"), true);
    $("whoami").textContent = `${session.username} · ${session.role}`;
    const canTrade = session.role === "trader" || session.role === "admin";
    $("order-fields").disabled = !canTrade;
    show($("order-readonly"), !canTrade);
    state.expiryTimer = setTimeout(() => logout("Your session has expired: please log in again."),
      Math.max(0, session.expiresAt - Date.now()));

    const me = await api("/api/v1/auth/me");
    if (!state.session) return; // the token was refused: logout() already ran
    if (me.ok) {
      session.accountId = me.data.account_id;
      session.role = me.data.role;
      sessionStorage.setItem(SESSION_KEY, JSON.stringify(session));
    }
    connectEvents();
    loadSecurities();
    refreshOrders();
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
    describeSecurity();
  }

  function describeSecurity() {
    const security = state.securities.get($("order-ts-code").value.trim().toUpperCase());
    $("order-security-name").textContent = security
      ? `${security.name} · ${security.exchange || ""} ${security.board || ""}${security.is_st ? " · ST" : ""}`
      : "";
  }

  // --- orders ----------------------------------------------------------------------------------------------

  function onTypeChange() {
    const market = $("order-type").value === "market";
    $("order-price").disabled = market;
    if (market) $("order-price").value = "";
  }

  async function placeOrder(event) {
    event.preventDefault();
    const out = $("order-result");
    const orderType = $("order-type").value;
    const order = {
      client_order_id: newClientOrderId(),
      ts_code: $("order-ts-code").value.trim().toUpperCase(),
      side: $("order-side").value,
      order_type: orderType,
      qty: Number.parseInt($("order-qty").value, 10),
    };
    // The price travels as a decimal string: the services keep money exact, a float would not be.
    const price = $("order-price").value.trim();
    if (orderType === "limit" && price !== "") order.price = price;  // empty: let risk say a limit needs a price
    $("order-submit").disabled = true;
    out.replaceChildren(el("div", { class: "text-body-secondary small", text: "Sending…" }));
    try {
      const result = await api("/api/v1/orders", { method: "POST", json: order });
      out.replaceChildren(renderOrderResult(result));
      if (result.ok) refreshOrders();
    } finally {
      $("order-submit").disabled = false;
    }
  }

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
        return;
      }
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
    });
  }

  function addEvent(event) {
    const list = $("events");
    $("events-empty")?.remove();
    const p = event.payload || {};
    let summary;
    if (event.type.startsWith("order.")) {
      summary = `${fmt(p.ts_code)} ${fmt(p.side)} ${fmt(p.qty)} @ ${p.price ?? "market"} · ${fmt(p.status)}` +
        (p.filled_qty ? ` · filled ${p.filled_qty} @ ${fmt(p.avg_fill_price)}` : "") + (p.reason ? ` · ${p.reason}` : "");
    } else if (event.type.startsWith("trade.")) {
      summary = `${fmt(p.ts_code)} ${fmt(p.side)} ${fmt(p.qty)} @ ${fmt(p.price)} = ${fmt(p.amount)} CNY`;
    } else if (event.type === "backtest.progress") {
      summary = `backtest ${fmt(p.backtest_id)} ${p.percent}% (${p.days_done}/${p.days} days)` +
        (p.eta_s != null ? ` · about ${Math.round(p.eta_s)} s left` : "");
    } else if (event.type.startsWith("backtest.")) {
      summary = `backtest ${fmt(p.backtest_id)} ${fmt(p.status)}` +
        (p.total_return != null ? ` · return ${p.total_return}` : "") + (p.error ? ` · ${p.error}` : "");
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
    list.prepend(item);
    while (list.children.length > MAX_EVENTS) list.lastElementChild.remove();
    if (event.type.startsWith("order.") || event.type.startsWith("trade.")) scheduleOrdersRefresh();
  }

  // The report is a self-contained HTML page behind the same credentials as the API: fetch it with the token and
  // show it from a blob URL (a plain link would carry no Authorization header).
  async function openReport(backtestId) {
    const headers = state.session ? { Authorization: `Bearer ${state.session.token}` } : {};
    const response = await fetch(`/api/v1/backtests/${encodeURIComponent(backtestId)}/report.html`, { headers });
    if (!response.ok) return;
    const url = URL.createObjectURL(new Blob([await response.text()], { type: "text/html" }));
    window.open(url, "_blank", "noopener");
  }

  // Fills arrive in bursts: one table reload per burst.
  let refreshSoon = null;
  function scheduleOrdersRefresh() {
    clearTimeout(refreshSoon);
    refreshSoon = setTimeout(refreshOrders, 300);
  }

  // --- wiring ----------------------------------------------------------------------------------------------

  document.addEventListener("DOMContentLoaded", () => {
    $("login-form").addEventListener("submit", login);
    $("logout").addEventListener("click", () => logout());
    $("order-form").addEventListener("submit", placeOrder);
    $("order-type").addEventListener("change", onTypeChange);
    $("order-ts-code").addEventListener("input", describeSecurity);
    $("orders-refresh").addEventListener("click", refreshOrders);
    $("events-clear").addEventListener("click", () => $("events").replaceChildren());
    state.session = loadSession();
    if (state.session) startDesk();
    else show($("login-view"), true);
  });
})();
