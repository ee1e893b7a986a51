// LiangHua web UI: log in, watch orders and live events, create and run strategy instances and watch their equity;
// the trading desk's ticket, open orders, positions, TCA and bridge state are desk.js's, backtests and optimisations
// pages/backtests.js's. Plain JS, no build step, no CDN.
// Everything the server sends is put on the page with textContent, never as HTML.
"use strict";

(() => {
  const TOKEN_URL = "/api/v1/auth/token";
  const SESSION_KEY = "lianghua.session";
  const ORDERS_REFRESH_MS = 5000;
  const MAX_EVENTS = 200;
  const OPEN_STATUSES = new Set(["accepted", "submitted", "partially_filled", "unknown"]);
  const DEFAULT_SYMBOLS = 5;

  const $ = (id) => document.getElementById(id);
  const { t, word } = window.LHI18n;

  // The words of the login view, the top bar, the orders table and the Strategies page (the desk's are desk.js's).
  window.LHI18n.add({
    zh: {
      "login.title": "登录",
      "login.username": "用户名",
      "login.password": "密码",
      "login.submit": "登录",
      "nav.menu": "菜单",
      "session.logout": "退出",
      "session.events": "实时事件推送",
      "session.bridges": "QMT 通道（管理员）",
      "session.ws": "推送：{state}",
      "session.ws_offline": "离线",
      "session.ws_connecting": "连接中",
      "session.ws_live": "在线",
      "session.ws_reconnecting": "重连中",
      "session.ended": "会话已结束，请重新登录。",
      "session.expired": "会话已过期，请重新登录。",
      "common.sending": "发送中…",
      "order.accepted": "委托已受理。",
      "order.request": "请求号 {id}",
      "orders.none": "暂无委托。",
      "orders.failed": "委托刷新失败：{reason}",
      "orders.refusals_failed": "风控拒单记录刷新失败：{reason}",
      "orders.cancel": "撤单",
      "orders.cancel_failed": "撤单 {id} 失败：{reason}",
      "trades.none": "暂无成交。",
      "events.filled": "成交 {qty} @ {price}",
      "events.bar": "实例 {id} · K线 {date} · 权益 {equity} 元 · {orders} 笔委托",
      "col.order": "委托号",
      "col.security": "证券",
      "col.side": "买卖",
      "col.type": "类型",
      "col.qty": "数量",
      "col.price": "价格",
      "col.status": "状态",
      "col.filled": "成交",
      "col.avg_price": "成交均价",
      "col.updated": "更新时间",
      "col.time": "成交时间",
      "col.amount": "金额",
      "col.fees": "费用",
      "strat.instances": "策略实例",
      "strat.instance": "实例",
      "strat.strategy": "策略",
      "strat.state": "状态",
      "strat.mode": "模式",
      "strat.capital": "资金",
      "strat.capital_cny": "资金（元）",
      "strat.equity": "权益",
      "strat.pnl_today": "当日盈亏",
      "strat.positions": "持仓",
      "strat.fills": "成交",
      "strat.new": "新建实例",
      "strat.readonly": "您的角色是观察员：只能查看策略实例，不能运行。",
      "strat.params": "策略参数",
      "strat.universe": "股票池（代码，逗号分隔）",
      "strat.timing": "下单时点",
      "strat.timing_open": "开盘（09:30）",
      "strat.timing_auction": "开盘集合竞价（09:15-09:20）",
      "strat.replay": "回放",
      "strat.replay_note": "（仅限回放时钟的平台；留空则按实时时钟交易）",
      "strat.from": "开始",
      "strat.to": "结束",
      "strat.pace": "速度（每秒天数）",
      "strat.pace_fast": "尽快",
      "strat.replay_hint": "启动后按完整下单流程回放这些交易日，然后停止。",
      "strat.replay_both": "回放需要开始和结束日期",
      "strat.replay_pace": "速度须为正数（每秒天数）",
      "strat.create": "创建实例",
      "strat.created": "实例已创建。",
      "strat.created_hint": "在表中点击“启动”运行。",
      "strat.detail_empty": "在表中选择一个实例，查看其权益、持仓、委托和成交。",
      "strat.chart": "权益曲线",
      "strat.chart_axis": "权益（元）",
      "strat.chart_failed": "无法绘制图表：{reason}",
      "strat.no_equity": "暂无权益：曲线从实例的第一根K线开始。",
      "strat.no_positions": "无持仓 · 现金 {cash} 元",
      "strat.none": "暂无策略实例。",
      "strat.load_failed": "策略实例刷新失败：{reason}",
      "strat.err_performance": "绩效",
      "strat.err_sleeve": "子账户",
      "strat.progress": "{state} · {days} 天",
      "strat.progress_replay": "{state} · 回放 {done}/{days} 天 · {date} · {orders} 笔委托",
      "strat.action_start": "启动",
      "strat.action_pause": "暂停",
      "strat.action_resume": "恢复",
      "strat.action_stop": "停止",
      "strat.catalogue_failed": "策略列表加载失败：{reason}",
      "strat.parameters": "参数",
      "strat.no_parameters": "此策略没有参数。",
      "strat.required": "必填",
      "strat.default": "默认 {value}",
      "strat.owner": "所有者 {owner}",
    },
    en: {
      "login.title": "Log in",
      "login.username": "Username",
      "login.password": "Password",
      "login.submit": "Log in",
      "nav.menu": "Menu",
      "session.logout": "Log out",
      "session.events": "live events",
      "session.bridges": "QMT bridges (admins)",
      "session.ws": "events: {state}",
      "session.ws_offline": "offline",
      "session.ws_connecting": "connecting",
      "session.ws_live": "live",
      "session.ws_reconnecting": "reconnecting",
      "session.ended": "Your session has ended: please log in again.",
      "session.expired": "Your session has expired: please log in again.",
      "common.sending": "Sending…",
      "order.accepted": "Order accepted.",
      "order.request": "request {id}",
      "orders.none": "No orders yet.",
      "orders.failed": "Could not load orders: {reason}",
      "orders.refusals_failed": "Could not load risk's refusals: {reason}",
      "orders.cancel": "Cancel",
      "orders.cancel_failed": "Cancel {id}: {reason}",
      "trades.none": "No fills yet.",
      "events.filled": "filled {qty} @ {price}",
      "events.bar": "instance {id} · bar {date} · equity {equity} CNY · {orders} orders",
      "col.order": "Order",
      "col.security": "Security",
      "col.side": "Side",
      "col.type": "Type",
      "col.qty": "Qty",
      "col.price": "Price",
      "col.status": "Status",
      "col.filled": "Filled",
      "col.avg_price": "Avg price",
      "col.updated": "Updated",
      "col.time": "Time",
      "col.amount": "Amount",
      "col.fees": "Fees",
      "strat.instances": "Strategy instances",
      "strat.instance": "Instance",
      "strat.strategy": "Strategy",
      "strat.state": "State",
      "strat.mode": "Mode",
      "strat.capital": "Capital",
      "strat.capital_cny": "Capital (CNY)",
      "strat.equity": "Equity",
      "strat.pnl_today": "Today's P&L",
      "strat.positions": "Positions",
      "strat.fills": "Fills",
      "strat.new": "New instance",
      "strat.readonly": "Your role is viewer: you can watch strategy instances, not run them.",
      "strat.params": "strategy parameters",
      "strat.universe": "Universe (ts_code, comma-separated)",
      "strat.timing": "Orders go out",
      "strat.timing_open": "at the open (09:30)",
      "strat.timing_auction": "in the opening auction (09:15-09:20)",
      "strat.replay": "Replay",
      "strat.replay_note": "(a platform on the replay market clock only; leave empty to trade the live clock)",
      "strat.from": "From",
      "strat.to": "To",
      "strat.pace": "Pace (days per second)",
      "strat.pace_fast": "as fast as it goes",
      "strat.replay_hint": "Start plays these days through the whole order path, then stops.",
      "strat.replay_both": "a replay needs both its first and last day",
      "strat.replay_pace": "a pace is a positive number of days per second",
      "strat.create": "Create instance",
      "strat.created": "Instance created.",
      "strat.created_hint": "press Start in the table to run it.",
      "strat.detail_empty": "Select an instance in the table to see its equity, positions, orders and fills.",
      "strat.chart": "equity chart",
      "strat.chart_axis": "equity (CNY)",
      "strat.chart_failed": "The chart cannot be drawn: {reason}",
      "strat.no_equity": "No equity yet: the curve starts with the instance's first bar.",
      "strat.no_positions": "No positions · cash {cash} CNY",
      "strat.none": "No strategy instances yet.",
      "strat.load_failed": "Could not load strategy instances: {reason}",
      "strat.err_performance": "performance",
      "strat.err_sleeve": "sleeve",
      "strat.progress": "{state} · {days} days",
      "strat.progress_replay": "{state} · replay {done}/{days} days · {date} · {orders} orders",
      "strat.action_start": "Start",
      "strat.action_pause": "Pause",
      "strat.action_resume": "Resume",
      "strat.action_stop": "Stop",
      "strat.catalogue_failed": "Could not load strategies: {reason}",
      "strat.parameters": "Parameters",
      "strat.no_parameters": "This strategy takes no parameters.",
      "strat.required": "required",
      "strat.default": "default {value}",
      "strat.owner": "owner {owner}",
    },
  });
  const state = {
    session: null, // {token, username, role, accountId, expiresAt}
    socket: null,
    socketRetryMs: 1000,
    socketTimer: null,
    ordersTimer: null,
    expiryTimer: null,
    securities: new Map(),
    strategies: new Map(), // name -> {name, title, description, parameters}
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

  // A refusal in the page's language: the code's words (error.<code> in i18n.js) with the server's message, else the
  // server's `code: message` as given.
  function errorText(result) {
    const data = result.data;
    if (data && typeof data === "object" && data.code) return window.LHI18n.errorMessage(data.code, data.message);
    if (result.status === 0) return t("error.network");
    return t("error.http", { status: result.status });
  }

  function clock() {
    return new Date().toLocaleTimeString("zh-CN", { hour12: false });
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
      logout("session.ended");
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
      const wrong = result.data && result.data.code === "invalid_credentials";
      $("login-error").textContent = wrong ? t("error.invalid_credentials") : errorText(result);
      $("login-error").dataset.key = wrong ? "error.invalid_credentials" : "";
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
    clearTimeout(accountSoon);
    state.accountSeq += 1; // an answer still on its way belongs to the old session
    window.LHDesk.stop();
    clearStrategies();
    eachPage("stop");
    watching.owners.clear();
    watching.sent = new Set();
    for (const page of PAGES) if ($(`${page}-view`)) show($(`${page}-view`), false);
    show($("pages"), false);
    if (message) {
      $("login-error").textContent = t(message); // an i18n key: said again in the other language on a switch
      $("login-error").dataset.key = message;
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
    renderWhoami();
    const canTrade = session.role === "trader" || session.role === "admin";
    $("order-fields").disabled = !canTrade;
    show($("order-readonly"), !canTrade);
    $("instance-fields").disabled = !canTrade;
    show($("instance-readonly"), !canTrade);
    state.expiryTimer = setTimeout(() => logout("session.expired"),
      Math.max(0, session.expiresAt - Date.now()));

    const me = await api("/api/v1/auth/me");
    if (!state.session) return; // the token was refused: logout() already ran
    if (me.ok) {
      session.accountId = me.data.account_id;
      session.role = me.data.role;
      sessionStorage.setItem(SESSION_KEY, JSON.stringify(session));
      renderWhoami();
      const canRun = session.role === "trader" || session.role === "admin";
      $("instance-fields").disabled = !canRun;
      show($("instance-readonly"), !canRun);
    }
    connectEvents();
    loadSecurities();
    loadStrategies();
    refreshOrders();
    refreshAccount();
    refreshInstances();
    window.LHDesk.start();
    eachPage("start");
    showPage(currentPage()); // the pages have started: the routed one shows what it loaded
    state.ordersTimer = setInterval(refreshOrders, ORDERS_REFRESH_MS);
  }

  function renderWhoami() {
    const session = state.session;
    $("whoami").textContent = session ? `${session.username} · ${word("role", session.role)}` : "";
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
    // The pages that offer the market's codes (the Backtests page's symbols) take them from here.
    window.dispatchEvent(new CustomEvent("lh:securities", { detail: result.data }));
    if (!$("instance-codes").value.trim()) {
      $("instance-codes").value = result.data.slice(0, DEFAULT_SYMBOLS).map((s) => s.ts_code).join(", ");
    }
  }

  // --- the order ticket's live quote (docs/quotes.md): subscribed on /ws; desk.js shows it -------------------------

  function sendOnSocket(message) {
    if (state.socket && state.socket.readyState === WebSocket.OPEN) state.socket.send(JSON.stringify(message));
  }

  // The quote subscription of the one socket, shared by the pages: each owner ("desk", "market", ...) says which
  // codes it wants with watch(owner, codes); the socket is subscribed to the union, so a code stays subscribed while
  // any owner still wants it (the gateway keeps one set of codes per socket). Sent again whole when a socket opens.
  const watching = { owners: new Map(), sent: new Set() };

  function watchedCodes() {
    const all = new Set();
    for (const codes of watching.owners.values()) for (const code of codes) all.add(code);
    return all;
  }

  function syncWatched() {
    if (!state.socket || state.socket.readyState !== WebSocket.OPEN) return; // the socket's opening sends them
    const wanted = watchedCodes();
    const drop = [...watching.sent].filter((c) => !wanted.has(c));
    const add = [...wanted].filter((c) => !watching.sent.has(c));
    if (drop.length) sendOnSocket({ op: "unsubscribe", codes: drop });
    if (add.length) sendOnSocket({ op: "subscribe", codes: add });
    watching.sent = wanted;
  }

  function watch(owner, codes) {
    const wanted = new Set([...(codes || [])].filter(Boolean));
    if (wanted.size) watching.owners.set(owner, wanted);
    else watching.owners.delete(owner);
    syncWatched();
  }

  // --- orders ----------------------------------------------------------------------------------------------

  function renderOrderResult(result) {
    if (result.ok) {
      const placed = (result.data && result.data.order) || result.data || {};
      return el(
        "div",
        { class: "alert alert-success mb-0", role: "status" },
        el("strong", { text: `${t("order.accepted")} ` }),
        `${fmt(placed.order_id)} · ${window.LHI18n.orderStatus(placed)}`,
      );
    }
    const box = el("div", { class: "alert alert-danger mb-0", role: "alert" }, el("strong", { text: errorText(result) }));
    const reasons = result.data && result.data.decision && result.data.decision.reasons;
    if (Array.isArray(reasons) && reasons.length) {
      box.append(el("ul", { class: "mb-0 mt-2" }, ...reasons.map((r) => el("li", { text: window.LHI18n.errorMessage(r.code, r.message) }))));
    }
    const details = result.data && result.data.details;
    if (Array.isArray(details) && details.length) {
      box.append(el("ul", { class: "mb-0 mt-2" }, ...details.map((d) => el("li", { text: `${d.field}: ${d.message}` }))));
    }
    if (result.requestId) box.append(el("div", { class: "small text-body-secondary mt-2 mono", text: t("order.request", { id: result.requestId }) }));
    return box;
  }

  // Orders with risk's refusals among them (GET /decisions, approved false: they never became orders), newest first.
  async function refreshOrders() {
    if (!state.session) return;
    const [result, decisions] = await Promise.all([api("/api/v1/orders"), api("/api/v1/decisions?limit=100")]);
    if (!state.session) return;
    const errorBox = $("orders-error");
    if (!result.ok) {
      errorBox.textContent = t("orders.failed", { reason: errorText(result) });
      show(errorBox, true);
      return;
    }
    const orders = Array.isArray(result.data) ? result.data : (result.data && (result.data.orders || result.data.items)) || [];
    const refused = decisions.ok && Array.isArray(decisions.data)
      ? decisions.data.filter((d) => !d.approved && !d.strategy_instance_id && d.account_id === state.session.accountId).map((d) => ({ ...d, status: "risk_refused", refused: true }))
      : [];
    // The refusals are a part of the table: one that could not be read is said, not left out silently.
    const refusalsFailed = !decisions.ok && decisions.status !== 403;
    errorBox.textContent = refusalsFailed ? t("orders.refusals_failed", { reason: errorText(decisions) }) : "";
    show(errorBox, refusalsFailed);
    state.orders = orders;
    state.refusals = refused;
    renderOrders();
    window.LHDesk.onOrders(orders);
    state.ordersUpdated = clock();
    $("orders-updated").textContent = t("common.updated", { time: state.ordersUpdated });
  }

  function renderOrders() {
    if (!state.session) return;
    const rows = [...(state.orders || []), ...(state.refusals || [])];
    const when = (o) => String(o.updated_at || o.created_at || "");
    rows.sort((a, b) => when(b).localeCompare(when(a)));
    const canTrade = state.session.role === "trader" || state.session.role === "admin";
    $("orders").replaceChildren(...rows.map((o) => orderRow(o, canTrade)));
    if (!rows.length) {
      $("orders").append(el("tr", {}, el("td", { colspan: "11", class: "text-body-secondary small", text: t("orders.none") })));
    }
  }

  // Why an order ended as it did, as the screen shows it under the status: risk's reasons, or the broker's.
  function orderReason(o) {
    if (Array.isArray(o.reasons) && o.reasons.length) {
      return o.reasons.map((r) => window.LHI18n.errorMessage(r.code, r.message)).join("; ");
    }
    return o.reason ? String(o.reason) : "";
  }

  function orderRow(o, canTrade) {
    let action = null;
    if (canTrade && !o.refused && OPEN_STATUSES.has(o.status)) {
      action = el("button", {
        class: "btn btn-outline-danger btn-sm",
        type: "button",
        text: t("orders.cancel"),
        onclick: () => cancelOrder(o.order_id),
      });
    }
    const reason = orderReason(o);
    const statusKey = window.LHI18n.orderStatusKey(o);
    return el(
      "tr",
      { "data-status": statusKey, id: o.refused ? `refusal-${o.decision_id}` : undefined },
      el("td", { class: "mono", text: o.refused ? "—" : fmt(o.order_id), title: `client id ${fmt(o.client_order_id)}` }),
      el("td", { text: fmt(o.ts_code) }),
      el("td", { class: `side-${o.side}`, text: word("side", o.side) }),
      el("td", { text: word("type", o.order_type) }),
      el("td", { class: "text-end", text: groupDigits(o.qty) }),
      el("td", { class: "text-end", text: groupDigits(o.price) }),
      el(
        "td",
        { class: "order-status" },
        el("span", { class: `badge ${statusClass(o.status)}`, text: word("status", statusKey), title: reason || undefined }),
        reason ? el("div", { class: "small text-danger order-reason", text: reason }) : null,
      ),
      el("td", { class: "text-end", text: o.refused ? "—" : groupDigits(o.filled_qty) }),
      el("td", { class: "text-end", text: groupDigits(o.avg_fill_price) }),
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
        risk_refused: "text-bg-danger",
        unknown: "text-bg-warning",
      }[status] || "text-bg-light"
    );
  }

  async function cancelOrder(orderId) {
    const result = await api(`/api/v1/orders/${encodeURIComponent(orderId)}/cancel`, { method: "POST" });
    if (!result.ok) {
      $("orders-error").textContent = t("orders.cancel_failed", { id: orderId, reason: errorText(result) });
      show($("orders-error"), true);
    }
    refreshOrders();
    refreshAccount();
  }

  // --- live events -----------------------------------------------------------------------------------------

  function setSocketStatus(text, color) {
    const badge = $("ws-status");
    badge.dataset.state = text;
    badge.textContent = t("session.ws", { state: t(`session.ws_${text}`) });
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
        watching.sent = new Set(); // a new socket has no subscriptions: every owner's codes again
        syncWatched();
        window.LHDesk.onSocketOpen();
        window.dispatchEvent(new CustomEvent("lh:socket-open"));
        return;
      }
      if (event.type === "quotes.snapshot") {
        (event.payload.quotes || []).forEach(window.LHDesk.onQuote); // the desk's quotes, not the events list
        window.dispatchEvent(new CustomEvent("lh:quotes", { detail: event.payload.quotes || [] }));
        return;
      }
      if (event.type === "bars.1m" || event.type === "ws.subscribed" || event.type === "ws.error") return;
      addEvent(event);
    });
    socket.addEventListener("close", (closed) => {
      if (state.socket !== socket) return; // replaced or logged out
      state.socket = null;
      if (closed.code === 4401) {
        logout("session.ended");
        return;
      }
      setSocketStatus("reconnecting", "secondary");
      state.socketTimer = setTimeout(connectEvents, state.socketRetryMs);
      state.socketRetryMs = Math.min(state.socketRetryMs * 2, 30000);
      refreshOrders(); // events missed while disconnected are in the orders table
      refreshAccount();
      refreshInstances();
      eachPage("refresh"); // the pages reload what they show
    });
  }

  function addEvent(event) {
    const list = $("events");
    $("events-empty")?.remove();
    const p = event.payload || {};
    let summary;
    if (event.type === "risk.order.denied") {
      summary = `${fmt(p.ts_code)} ${word("side", p.side)} ${fmt(p.qty)} @ ${p.price ?? t("type.market")} · ${t("status.risk_refused")}: ` +
        (p.reasons || []).map((r) => window.LHI18n.errorMessage(r.code, r.message)).join("; ");
    } else if (event.type.startsWith("order.")) {
      summary = `${fmt(p.ts_code)} ${word("side", p.side)} ${fmt(p.qty)} @ ${p.price ?? t("type.market")} · ${window.LHI18n.orderStatus(p)}` +
        (p.filled_qty ? ` · ${t("events.filled", { qty: p.filled_qty, price: fmt(p.avg_fill_price) })}` : "") + (p.reason ? ` · ${p.reason}` : "");
    } else if (event.type.startsWith("trade.")) {
      summary = `${fmt(p.ts_code)} ${word("side", p.side)} ${fmt(p.qty)} @ ${fmt(p.price)} = ${groupDigits(p.amount)} ${t("common.cny")}`;
    } else if (event.type === "backtest.progress") {
      summary = `backtest ${fmt(p.backtest_id)} ${p.percent}% (${p.days_done}/${p.days} days)` +
        (p.eta_s != null ? ` · about ${Math.round(p.eta_s)} s left` : "");
    } else if (event.type.startsWith("backtest.")) {
      summary = `backtest ${fmt(p.backtest_id)} ${fmt(p.status)}` +
        (p.total_return != null ? ` · return ${fmtPercent(p.total_return) ?? p.total_return}` : "") +
        (p.error ? ` · ${p.error}` : "");
    } else if (event.type === "strategy.instance.bar") {
      summary = t("events.bar", { id: fmt(p.instance_id).slice(0, 8), date: fmt(p.bar_date), equity: groupDigits(p.equity), orders: fmt(p.orders_sent) });
    } else if (event.type.startsWith("strategy.instance.")) {
      summary = `${t("strat.instance")} ${fmt(p.instance_id).slice(0, 8)} (${fmt(p.strategy)}, ${word("mode", p.mode)}) · ${word("instance", p.state)}` +
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
      button.addEventListener("click", async () => {
        const problem = await openReport("backtests", p.backtest_id);
        if (problem) item.append(el("span", { class: "small text-danger", text: problem }));
      });
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
    eachPage("onEvent", event);
    if (event.type.startsWith("strategy.instance.")) onInstanceEvent(event.type, p);
  }

  // The report is a self-contained HTML page whose charts are inline scripts. The desk's policy refuses those (and a
  // blob: page would inherit it), and a plain link carries no Authorization header: the gateway gives a short-lived
  // link for this one report, served with its own sandboxed policy (gateway/reports.py). The tab is opened at the
  // click, so no popup blocker stops it, and pointed at the link once it is there.
  // kind: "backtests" or "optimisations". Returns null once the tab is on its way, else what went wrong.
  async function openReport(kind, reportId) {
    const tab = window.open("about:blank", "_blank");
    if (tab) tab.opener = null;
    const result = await api(`/api/v1/${kind}/${encodeURIComponent(reportId)}/report-link`, { method: "POST" });
    if (!result.ok || !result.data || typeof result.data.url !== "string") {
      if (tab) tab.close();
      return `${reportId}: ${errorText(result)}`;
    }
    if (tab) tab.location.replace(result.data.url);
    else window.open(result.data.url, "_blank", "noopener");
    return null;
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
    const text = plainDecimal(String(value));
    const match = /^([+-]?)(\d+)(\.\d+)?$/.exec(text);
    if (!match) return text;
    return match[1] + match[2].replace(/\B(?=(\d{3})+(?!\d))/g, ",") + (match[3] || "");
  }

  // A decimal in exponent notation, as Python's Decimal writes some values ("0E-8", "1.5E+3"), written out in plain
  // digits by moving the point in the text, its zeros after the second decimal dropped (the value unchanged):
  // "0E-8" -> "0.00", "1.5E+3" -> "1500", "1.2345E+1" -> "12.345". Anything else is left as given.
  function plainDecimal(text) {
    const match = /^([+-]?)(\d+)(?:\.(\d*))?[eE]([+-]?\d+)$/.exec(text);
    if (!match) return text;
    const [, sign, whole, fraction = "", exp] = match;
    const shift = Number(exp);
    if (!Number.isSafeInteger(shift) || Math.abs(shift) > 100) return text;
    const digits = whole + fraction;
    let point = whole.length + shift; // where the point falls in digits
    let padded = digits;
    if (point <= 0) {
      padded = "0".repeat(1 - point) + digits;
      point = 1;
    } else if (point > digits.length) {
      padded = digits + "0".repeat(point - digits.length);
    }
    const intPart = padded.slice(0, point).replace(/^0+(?=\d)/, "");
    const fracPart = padded.slice(point).replace(/(?<=\d{2})0+$/, "");
    return `${sign}${intPart}${fracPart ? `.${fracPart}` : ""}`;
  }

  function money(value, currency) {
    return groupDigits(value) + (value === undefined || value === null || value === "" ? "" : ` ${currency || t("common.cny")}`);
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

  // The Backtests page and the Strategies page build their parameter forms from the same catalogue and code: each
  // form's elements are named by its prefix (backtest-strategy, backtest-params, backtest-param-fast; instance-...).
  // The Strategies page's form is this file's; the Backtests page (pages/backtests.js) builds its own and is told
  // by the window event "lh:strategies" (detail: {ok, error}) when the catalogue is loaded.
  const PARAM_FORMS = ["instance"];

  async function loadStrategies() {
    const result = await api("/api/v1/strategies");
    if (!state.session) return;
    if (!result.ok || !Array.isArray(result.data)) {
      for (const prefix of PARAM_FORMS) {
        $(`${prefix}-result`).replaceChildren(
          el("div", { class: "alert alert-danger mb-0", role: "alert", text: t("strat.catalogue_failed", { reason: errorText(result) }) }),
        );
      }
      window.dispatchEvent(new CustomEvent("lh:strategies", { detail: { ok: false, error: errorText(result) } }));
      return;
    }
    state.strategies.clear();
    for (const s of result.data) state.strategies.set(s.name, s);
    for (const prefix of PARAM_FORMS) fillStrategies(prefix);
    window.dispatchEvent(new CustomEvent("lh:strategies", { detail: { ok: true, error: null } }));
  }

  // The form's strategy list from the catalogue (the choice kept where it still exists), and its parameters.
  function fillStrategies(prefix) {
    const select = $(`${prefix}-strategy`);
    if (!select) return;
    const previous = select.value;
    select.replaceChildren(
      ...Array.from(state.strategies.values(), (s) => el("option", { value: s.name, text: s.title ? `${s.name} · ${s.title}` : s.name })),
    );
    if (state.strategies.has(previous)) select.value = previous;
    else if (state.strategies.has("dual_ma")) select.value = "dual_ma";
    renderParams(prefix);
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
      el("div", { class: "form-label fw-semibold small text-body-secondary mb-1", text: t("strat.parameters") }),
      fields.length
        ? el("div", { class: "row g-2 backtest-params" }, ...fields)
        : el("p", { class: "small text-body-secondary", text: t("strat.no_parameters") }),
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
    const helpText = [spec.description, boundsText(spec), spec.default !== undefined ? t("strat.default", { value: spec.default }) : ""]
      .filter(Boolean)
      .join(" · ");
    const label = el(
      "label",
      { class: spec.kind === "boolean" ? "form-check-label small" : "form-label small mb-0", for: id, text: spec.title },
      el("span", { class: "mono text-body-secondary ms-1", text: spec.name }),
      spec.required ? el("span", { class: "text-danger ms-1", title: t("strat.required"), text: "*" }) : null,
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
    if (result.requestId) box.append(el("div", { class: "small text-body-secondary mt-2 mono", text: t("order.request", { id: result.requestId }) }));
    return box;
  }

  // Some refusals (unknown_strategy) carry no details, only a message that starts with the field: "strategy: ...".
  function messageAsDetail(data) {
    const match = data && typeof data.message === "string" && /^([\w.]+): (.*)$/s.exec(data.message);
    return match ? [{ field: match[1], message: match[2] }] : [];
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

  function eachPage(method, ...args) {
    for (const name of PAGES) {
      const page = window.LHPages[name];
      if (page && typeof page[method] === "function") {
        try {
          page[method](...args);
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
      showInstancesError(t("strat.load_failed", { reason: errorText(result) }));
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
      $("instances").append(el("tr", {}, el("td", { colspan: "9", class: "text-body-secondary small", text: t("strat.none") })));
    }
    state.instances = new Map(instances.map((i) => [i.instance_id, i]));
    if (state.selectedInstance && !state.instances.has(state.selectedInstance)) selectInstance(null);
    // A watcher who is not the owner gets no bar events: the selected instance's detail follows this poll instead.
    const selected = state.instances.get(state.selectedInstance);
    if (selected && selected.state === "running") scheduleDetailRefresh();
    $("instances-updated").textContent = t("common.updated", { time: clock() });
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
      : t("common.none");

    const stateCell = el("td", {}, el("span", { class: `badge ${instanceStateClass(instance.state)}`, text: word("instance", instance.state) }));
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
          text: t(`strat.action_${action}`),
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
      el("td", { class: "mono", text: `${id.slice(0, 8)}…`, title: `${id} · ${t("strat.owner", { owner: instance.owner })}` }),
      el(
        "td",
        {},
        el("div", { text: fmt(instance.strategy) }),
        el("div", { class: "small text-body-secondary mono", text: paramsText(instance) }),
      ),
      stateCell,
      el("td", { text: word("mode", instance.mode) }),
      el("td", { class: "text-end", text: groupDigits(instance.capital) }),
      el("td", { class: "text-end", id: `instance-equity-${id}`, text: last ? groupDigits(last.equity) : "—", title: last ? String(last.date) : undefined }),
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
      return { problem: { field: start ? "replay.end" : "replay.start", message: t("strat.replay_both") } };
    }
    const pace = $("instance-replay-pace").value.trim();
    if (pace === "") return { replay: { start, end } };
    const daysPerSecond = Number(pace);
    if (!/^[0-9]*\.?[0-9]+$/.test(pace) || !(daysPerSecond > 0)) {
      return { problem: { field: "replay.days_per_second", message: t("strat.replay_pace") } };
    }
    return { replay: { start, end, days_per_second: daysPerSecond } };
  }

  async function actOnInstance(instanceId, action, button) {
    let json;
    if (action === "start" && state.replayClock !== false) {
      const { replay, problem } = readReplay();
      if (problem) {
        showActionError(`${t("strat.action_start")}: ${problem.field}: ${problem.message}`);
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
      showActionError(`${t(`strat.action_${action}`)} ${instanceId}: ${errorText(result)}`);
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
      out.replaceChildren(renderRefusal({ status: 0, data: { code: "invalid_input", message: t("error.invalid_input") } }, problems));
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
    out.replaceChildren(el("div", { class: "text-body-secondary small", text: t("common.sending") }));
    try {
      const result = await api("/api/v1/strategy-instances", { method: "POST", json: request });
      if (!state.session) return;
      if (result.ok && result.data) {
        out.replaceChildren(
          el(
            "div",
            { class: "alert alert-success mb-0", role: "status" },
            el("strong", { text: `${t("strat.created")} ` }),
            el("span", { class: "mono", text: fmt(result.data.instance_id) }),
            ` · ${t("strat.created_hint")}`,
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
        ? t("strat.progress_replay", { state: word("instance", p.state), done: fmt(progress.days_done), days: fmt(progress.days), date: fmt(progress.bar_date), orders: fmt(progress.orders_sent) })
        : t("strat.progress", { state: word("instance", p.state), days: p.days ?? state.curve.length });
      drawChart();
    } else {
      errors.push(`${t("strat.err_performance")}: ${errorText(performance)}`);
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
      if (!rows.length) $("detail-positions").append(emptyRow(4, t("strat.no_positions", { cash: groupDigits(sleeve.data.cash) })));
    } else {
      errors.push(`${t("strat.err_sleeve")}: ${errorText(sleeve)}`);
    }
    if (orders.ok && Array.isArray(orders.data)) {
      $("detail-orders").replaceChildren(...orders.data.map((o) => orderRow(o, false)));
      if (!orders.data.length) $("detail-orders").append(emptyRow(11, t("orders.none")));
    } else {
      errors.push(`${t("desk.orders")}: ${errorText(orders)}`);
    }
    if (trades.ok && Array.isArray(trades.data)) {
      $("detail-fills").replaceChildren(...trades.data.map(fillRow));
      if (!trades.data.length) $("detail-fills").append(emptyRow(6, t("trades.none")));
    } else {
      errors.push(`${t("strat.fills")}: ${errorText(trades)}`);
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
      el("td", { class: `side-${t.side}`, text: word("side", t.side) }),
      el("td", { class: "text-end", text: groupDigits(t.qty) }),
      el("td", { class: "text-end", text: fmt(t.price) }),
      el("td", { class: "text-end", text: groupDigits(t.amount), title: `${window.LHI18n.t("col.fees")} ${groupDigits(t.fees)}` }),
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
        $("chart-note").textContent = t("strat.chart_failed", { reason: err.message });
        show($("chart-note"), true);
        return;
      }
      if (!state.selectedInstance) return;
      const node = $("instance-chart");
      if (!state.chart) state.chart = echarts.init(node, null, { renderer: "canvas" });
      const points = state.curve;
      node.dataset.points = String(points.length);
      $("chart-note").textContent = points.length ? "" : t("strat.no_equity");
      show($("chart-note"), !points.length);
      // The chart draws floats: a pixel is far coarser than a fen. The tables keep the exact figures.
      state.chart.setOption(
        {
          animation: false,
          grid: { left: 86, right: 64, top: 28, bottom: 60 },
          // Plain-text tooltips: the page's policy refuses the inline styles of HTML ones.
          tooltip: { trigger: "axis", renderMode: "richText" },
          xAxis: { type: "category", data: points.map((p) => p[0]), boundaryGap: false },
          yAxis: { type: "value", scale: true, name: t("strat.chart_axis") },
          dataZoom: [{ type: "inside" }, { type: "slider", height: 18, bottom: 12 }],
          series: [
            {
              name: t("strat.equity"),
              type: "line",
              data: points.map((p) => Number(p[1])),
              showSymbol: points.length < 3,
              lineStyle: { width: 1.4 },
              areaStyle: { opacity: 0.12 },
              markLine: state.curveCapital
                ? { silent: true, symbol: "none", label: { formatter: t("strat.capital") }, data: [{ yAxis: Number(state.curveCapital) }] }
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
      equity.title = String(p.bar_date);
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
    $, api, el, show, fmt, fmtTime, groupDigits, money, errorText, state, sendOnSocket, watch, watchedCodes, newClientOrderId,
    renderOrderResult, refreshOrders, refreshAccount, cancelOrder, OPEN_STATUSES, currentPage, orderRow, fmtMarketTime, plainDecimal, emptyRow,
    // for the Backtests page: the strategies' parameter forms, field errors, refusals, reports and charts
    fillStrategies, renderParams, readParams, clearFieldErrors, markFieldErrors, renderRefusal, messageAsDetail, parseSymbols,
    paramsText, fmtPercent, openReport, loadEcharts, canRunBacktests,
  };

  // The language switched: what this file wrote is written again in it (the static text is i18n.js's apply()).
  function relabel() {
    renderWhoami();
    setSocketStatus($("ws-status").dataset.state || "offline", ($("ws-status").className.match(/text-bg-(\w+)/) || [])[1] || "secondary");
    if (state.ordersUpdated) $("orders-updated").textContent = t("common.updated", { time: state.ordersUpdated });
    if (!state.session) {
      const box = $("login-error");
      if (box.dataset.key) box.textContent = t(box.dataset.key);
      return;
    }
    renderOrders();
    refreshInstances();
    if (state.selectedInstance) refreshDetail();
  }

  // --- wiring ----------------------------------------------------------------------------------------------

  document.addEventListener("DOMContentLoaded", () => {
    $("login-form").addEventListener("submit", login);
    $("logout").addEventListener("click", () => logout());
    $("lang-switch").addEventListener("click", () => window.LHI18n.setLang(window.LHI18n.lang === "zh" ? "en" : "zh"));
    window.addEventListener("lh:lang", relabel);
    // Phone width: a page chosen in the folded nav folds it again.
    // A page chosen while the nav is still unfolding (Bootstrap ignores hide() during a transition) folds it once
    // it has unfolded.
    $("pages").addEventListener("click", (event) => {
      const nav = $("nav-collapse");
      if (!event.target.closest("a.nav-link") || !window.bootstrap) return;
      const fold = () => window.bootstrap.Collapse.getOrCreateInstance(nav, { toggle: false }).hide();
      if (nav.classList.contains("show")) fold();
      else if (nav.classList.contains("collapsing") && $("nav-toggler").getAttribute("aria-expanded") === "true") {
        nav.addEventListener("shown.bs.collapse", fold, { once: true });
      }
    });
    setSocketStatus("offline", "secondary");
    window.LHDesk.describeSecurity();
    $("orders-refresh").addEventListener("click", refreshOrders);
    $("account-refresh").addEventListener("click", refreshAccount);
    $("events-clear").addEventListener("click", () => $("events").replaceChildren());
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
