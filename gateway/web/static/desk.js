// LiangHua web UI, the trader's desk (issue 15 §3): the order ticket with its price ladder (limit, market with the
// exchange's market types, stop and stop-limit), the open orders with cancel / amend / cancel-all, positions and the
// account summary, the cost analysis (TCA) table, and the QMT bridge's state (a banner on the ticket; a badge for
// admins). Loaded after app.js, whose core (api, el, the session) it uses through window.LH.
// The checks made here as the trader types are a convenience: the services decide, and their refusal (a 4xx code and
// message) is shown as they give it.
"use strict";

window.LHDesk = (() => {
  const { $, api, el, show, fmt, groupDigits, errorText, state } = window.LH;

  const OPEN_CONDITIONAL = new Set(["waiting", "armed"]);
  const BROKER_POLL_MS = 10000;
  const TCA_ROWS = 50;
  const CANCEL_ALL_ARM_MS = 5000;
  const HELD_CODES = 40; // held codes whose quotes revalue the positions (the socket takes 50 codes: one is the ticket's)
  const REVALUE_MS = 3000; // at most one positions read per this, however many quotes arrive
  // The market order types are served with each security (`market_types`, from shared/core/market/order_types.py);
  // these are only their names on the screen.
  const MARKET_TYPE_NAMES = {
    counterparty_best: "对手方最优", own_best: "本方最优", best5_cancel: "最优五档即成剩撤",
    best5_limit: "最优五档即成剩转限", ioc: "即时成交剩余撤销", fok: "全额成交或撤销",
  };
  const DEFAULT_MARKET_TYPE = "counterparty_best";
  const BOARD_NAMES = { star: "STAR", bse: "BSE", chinext: "ChiNext", main: "main board" };

  const desk = {
    code: null, // the ticket's security
    live: null, // its latest real-time quote (GET /quotes/{code}/live, then /ws quotes.snapshot)
    reference: null, // its next-session quote (GET /quotes/{code}): the limits risk checks against
    positions: new Map(), // ts_code -> the position, as GET /positions last gave it
    openOrders: [],
    conditionals: [],
    amending: null, // {orderId, price, qty}: the open order whose amend row is open, with what is typed in it
    cancelAllTimer: null,
    brokerTimer: null,
    broker: null, // GET /accounts/{id}/broker: {broker, bridge_id, bridge_connected, orders_refused, ...}
    tcaSeq: 0,
    subscribed: new Set(), // codes this socket is subscribed to: the ticket's and the held ones
    revalueTimer: null,
    attempted: false, // an order was asked for and refused here: empty fields are errors too until one is sent
  };

  // --- exact decimals: prices as integer fen, never floats ------------------------------------------------------

  // "10.5" -> 1050; null when the text is not a plain non-negative decimal or not on the 0.01 tick.
  function toFen(text) {
    const match = /^(\d+)(?:\.(\d+))?$/.exec(String(text ?? ""));
    if (!match) return null;
    const fraction = (match[2] || "").replace(/0+$/, "");
    if (fraction.length > 2) return null;
    return Number(match[1]) * 100 + Number(fraction.padEnd(2, "0"));
  }

  function fenText(fen) {
    const sign = fen < 0 ? "-" : "";
    const abs = Math.abs(fen);
    return `${sign}${groupDigits(String(Math.floor(abs / 100)))}.${String(abs % 100).padStart(2, "0")}`;
  }

  function signClass(value) {
    const text = String(value ?? "");
    if (!/^[+-]?\d/.test(text) || /^[+-]?0*(\.0*)?$/.test(text)) return "";
    return text.startsWith("-") ? "return-down" : "return-up";
  }

  function canTrade() {
    return !!state.session && (state.session.role === "trader" || state.session.role === "admin");
  }

  // --- the ticket's security, its quote and its ladder -----------------------------------------------------------

  function security() {
    return state.securities.get($("order-ts-code").value.trim().toUpperCase()) || null;
  }

  function describeSecurity() {
    const s = security();
    $("order-security-name").textContent = s
      ? `${s.name} · ${s.exchange || ""} ${s.board || ""}${s.is_st ? " · ST" : ""}`
      : "";
    $("order-qty-hint").textContent = lotHint(s, $("order-side").value);
    fillMarketTypes(s);
    watchQuote(s ? s.ts_code : null);
    validateTicket(false);
  }

  function lotHint(s, side) {
    if (!s) return "Whole shares. Buys in lots of 100 shares (STAR: at least 200, BSE: at least 100, then any number).";
    const lots = lotOf(s);
    const buys = lots.step === lots.min
      ? `Buys in lots of ${lots.min} shares.`
      : `${BOARD_NAMES[s.board] || s.board} buys: at least ${lots.min} shares, then any number.`;
    if (side === "sell") {
      const held = desk.positions.get(s.ts_code);
      const sellable = held ? ` ${groupDigits(held.sellable_qty)} sellable.` : "";
      return `Whole shares. Sells as buys, or the whole sellable position (odd lot included).${sellable}`;
    }
    return `Whole shares. ${buys}`;
  }

  // The lot as the data service serves it with the security (shared/core/market/rules.py board_lots).
  function lotOf(s) {
    const min = Number.isSafeInteger(s && s.lot_min) ? s.lot_min : 100;
    const step = Number.isSafeInteger(s && s.lot_step) ? s.lot_step : 100;
    return { min, step };
  }

  function fillMarketTypes(s) {
    const select = $("order-market-type");
    const chosen = select.value || DEFAULT_MARKET_TYPE;
    const types = s && Array.isArray(s.market_types) && s.market_types.length ? s.market_types : [DEFAULT_MARKET_TYPE];
    select.replaceChildren(...types.map((value) => el("option", { value, text: `${value} ${MARKET_TYPE_NAMES[value] || ""}`.trim() })));
    select.value = types.includes(chosen) ? chosen : types[0];
  }

  async function watchQuote(code) {
    if (code === desk.code) return;
    desk.code = code;
    desk.live = null;
    desk.reference = null;
    $("order-live-quote").textContent = "";
    renderLadder();
    syncSubscriptions();
    if (!code) return;
    const [live, reference] = await Promise.all([
      api(`/api/v1/quotes/${encodeURIComponent(code)}/live`),
      api(`/api/v1/quotes/${encodeURIComponent(code)}`),
    ]);
    if (desk.code !== code) return;
    if (reference.ok && reference.data) desk.reference = reference.data;
    if (live.ok) onQuote(live.data);
    else if (live.data && live.data.code === "no_live_quote") $("order-live-quote").textContent = "no live quote yet";
    renderLadder();
    validateTicket(false);
  }

  // The socket follows the ticket's code and the held ones (their quotes revalue the positions).
  function wantedCodes() {
    const held = [...desk.positions.values()].filter((p) => Number(p.qty) > 0).map((p) => p.ts_code).slice(0, HELD_CODES);
    return new Set([...(desk.code ? [desk.code] : []), ...held]);
  }

  function syncSubscriptions() {
    const wanted = wantedCodes();
    const drop = [...desk.subscribed].filter((c) => !wanted.has(c));
    const add = [...wanted].filter((c) => !desk.subscribed.has(c));
    if (drop.length) window.LH.sendOnSocket({ op: "unsubscribe", codes: drop });
    if (add.length) window.LH.sendOnSocket({ op: "subscribe", codes: add });
    desk.subscribed = wanted;
  }

  function onSocketOpen() {
    desk.subscribed = new Set();
    syncSubscriptions();
  }

  function onQuote(q) {
    if (q && desk.positions.has(q.ts_code) && !desk.revalueTimer) {
      // A held code moved: the positions' value and P&L are the service's, read again (not computed here).
      desk.revalueTimer = setTimeout(() => {
        desk.revalueTimer = null;
        window.LH.refreshAccount();
      }, REVALUE_MS);
    }
    if (!q || q.ts_code !== desk.code) return;
    if (desk.live && desk.live.time && q.time && new Date(q.time) < new Date(desk.live.time)) return; // reordered
    desk.live = q;
    const bid = q.bid && q.bid.length ? `${q.bid[0].price} × ${q.bid[0].volume}` : "—";
    const ask = q.ask && q.ask.length ? `${q.ask[0].price} × ${q.ask[0].volume}` : "—";
    const time = new Date(q.time).toLocaleTimeString("zh-CN", { hour12: false });
    $("order-live-quote").textContent =
      `live ${q.last} (pre ${q.pre_close}) · bid ${bid} · ask ${ask} · vol ${groupDigits(String(q.volume))} · ${time}`;
    renderLadder();
    validateTicket(false);
  }

  // The day's limits: the live quote's (its trading day), else the next session's from the stored bars.
  function limits() {
    const q = desk.live;
    const r = desk.reference;
    const up = q && q.limit_up != null ? q.limit_up : r && r.limit_up != null ? r.limit_up : null;
    const down = q && q.limit_down != null ? q.limit_down : r && r.limit_down != null ? r.limit_down : null;
    return { up, down };
  }

  function ladderPrice(price, reference) {
    if (price === undefined || price === null) return el("span", { class: "text-body-secondary", text: "—" });
    const fen = toFen(price);
    const ref = toFen(reference);
    const colour = fen !== null && ref !== null ? (fen > ref ? "return-up" : fen < ref ? "return-down" : "") : "";
    return el("button", {
      type: "button",
      class: `btn btn-link btn-sm p-0 mono ladder-price ${colour}`,
      "data-price": String(price),
      text: String(price),
      title: "put this price in the ticket",
      onclick: () => pickPrice(String(price)),
    });
  }

  function ladderRow(id, label, level, reference) {
    return el(
      "tr",
      { id },
      el("th", { scope: "row", class: "small fw-normal text-body-secondary", text: label }),
      el("td", { class: "text-end" }, ladderPrice(level ? level.price : null, reference)),
      el("td", { class: "text-end mono small", text: level ? groupDigits(String(level.volume)) : "" }),
    );
  }

  function renderLadder() {
    const q = desk.live;
    const { up, down } = limits();
    show($("ladder-box"), !!desk.code && (!!q || up !== null));
    $("ladder-limit-up").textContent = fmt(up);
    $("ladder-limit-down").textContent = fmt(down);
    if (!q) {
      $("ladder").replaceChildren();
      return;
    }
    const rows = [];
    const asks = q.ask || [];
    const bids = q.bid || [];
    for (let i = 5; i >= 1; i -= 1) rows.push(ladderRow(`ladder-ask-${i}`, `卖${i} ask ${i}`, asks[i - 1], q.pre_close));
    rows.push(el(
      "tr",
      { id: "ladder-last", class: "table-light" },
      el("th", { scope: "row", class: "small fw-normal", text: "last 最新" }),
      el("td", { class: "text-end" }, ladderPrice(q.last, q.pre_close)),
      el("td", { class: "text-end mono small", text: `pre ${fmt(q.pre_close)}` }),
    ));
    for (let i = 1; i <= 5; i += 1) rows.push(ladderRow(`ladder-bid-${i}`, `买${i} bid ${i}`, bids[i - 1], q.pre_close));
    $("ladder").replaceChildren(...rows);
  }

  // A ladder price goes where the order type takes a price: a stop's trigger, else the limit (a market order becomes
  // a limit order at it).
  function pickPrice(price) {
    const type = $("order-type").value;
    if (type === "stop") {
      $("order-stop-price").value = price;
    } else {
      if (type === "market") {
        $("order-type").value = "limit";
        onTypeChange();
      }
      $("order-price").value = price;
    }
    validateTicket(false);
  }

  // --- the ticket's checks, as the trader types ----------------------------------------------------------------------

  function onTypeChange() {
    const type = $("order-type").value;
    const takesPrice = type === "limit" || type === "stop_limit";
    const s = security();
    // A STAR market order carries a protection price (issue 15 §1): the price field stays open for it.
    const protection = type === "market" && s && s.board === "star";
    $("order-price").disabled = !takesPrice && !protection;
    if (!takesPrice && !protection) $("order-price").value = "";
    $("order-price-label").textContent = protection ? "Protection price 保护价" : "Price (CNY)";
    show($("order-market-type-box"), type === "market" || type === "stop");
    show($("order-stop-box"), type === "stop" || type === "stop_limit");
    if (type !== "stop" && type !== "stop_limit") $("order-stop-price").value = "";
    validateTicket(false);
  }

  function readQty() {
    const text = $("order-qty").value.trim();
    if (!/^[0-9]+$/.test(text)) {
      return { error: text === "" ? "Enter a quantity in shares." : "Whole shares only: digits 0-9, no decimal point, sign or exponent.", empty: text === "" };
    }
    const qty = Number(text);
    if (!Number.isSafeInteger(qty) || qty <= 0) return { error: "The quantity must be a positive whole number of shares." };
    return { qty };
  }

  // The lot rules of shared/core/market/rules.py (buy_qty_error, sell_qty_error), with their messages, on the lot the
  // data service serves: risk checks the same and has the last word.
  function lotError(s, side, qty) {
    if (!s) return null;
    const { min, step } = lotOf(s);
    const board = BOARD_NAMES[s.board] || s.board;
    const onLot = qty >= min && (qty - min) % step === 0;
    if (side === "buy") {
      if (onLot) return null;
      return step === min ? `lot_size: buys must be in lots of ${min} shares` : `lot_size: ${board} buys need at least ${min} shares`;
    }
    const held = desk.positions.get(s.ts_code);
    const sellable = held ? Number(held.sellable_qty) : null;
    if (sellable !== null && qty > sellable) return `lot_size: cannot sell more than the position (${sellable} sellable)`;
    if (sellable !== null && qty === sellable) return null;
    if (onLot) return null;
    return step === min
      ? "lot_size: odd lots can only be sold as the whole position"
      : `lot_size: ${board} sells below ${min} shares must close the whole position`;
  }

  // A price as typed: its fen, or why it is refused (risk's price_tick / price_limit messages).
  function priceCheck(text, { withinLimits = true } = {}) {
    if (!/^\d+(\.\d+)?$/.test(text)) return { error: "Enter a price in CNY, digits and a point: 10.50" };
    const fen = toFen(text);
    if (fen === null) return { error: `price_tick: price ${text} is not on the 0.01 tick` };
    if (fen <= 0) return { error: "The price must be above zero." };
    if (withinLimits) {
      const { up, down } = limits();
      if (up !== null && fen > toFen(up)) return { error: `price_limit: price ${text} is above the limit-up price ${up}` };
      if (down !== null && fen < toFen(down)) return { error: `price_limit: price ${text} is below the limit-down price ${down}` };
    }
    return { fen };
  }

  function mark(inputId, errorId, message) {
    $(inputId).classList.toggle("is-invalid", !!message);
    $(errorId).textContent = message || "";
  }

  // Checks the ticket. As the trader types (`submitting` false) an empty field is not yet an error; what is typed
  // and wrong is shown at once and keeps the order from being sent. Returns the order to send, or null.
  function validateTicket(submitting) {
    // Re-checked whenever a quote or the account arrives: once the trader asked, an empty field stays marked.
    const strict = submitting || desk.attempted;
    const s = security();
    const side = $("order-side").value;
    const type = $("order-type").value;
    const errors = {};
    const qty = readQty();
    if (qty.error) {
      if (!qty.empty || strict) errors.qty = qty.error;
    } else {
      const lot = lotError(s, side, qty.qty);
      if (lot) errors.qty = lot;
    }
    const priceText = $("order-price").value.trim();
    let price = null;
    if (type === "limit" || type === "stop_limit" || (type === "market" && priceText !== "")) {
      if (priceText === "") {
        if (strict) errors.price = `A ${type.replace("_", "-")} order needs a price.`;
      } else {
        const checked = priceCheck(priceText, { withinLimits: type !== "market" });
        if (checked.error) errors.price = checked.error;
        else price = priceText;
      }
    }
    if (type === "market" && s && s.board === "star" && priceText === "" && strict) {
      errors.price = "price: a STAR market order needs its protection price (保护限价)";
    }
    const stopText = $("order-stop-price").value.trim();
    let stop = null;
    if (type === "stop" || type === "stop_limit") {
      if (stopText === "") {
        if (strict) errors.stop = "A stop order needs its stop price.";
      } else {
        const checked = priceCheck(stopText);
        const last = desk.live ? toFen(desk.live.last) : null;
        if (checked.error) errors.stop = checked.error;
        else if (last !== null && side === "sell" && checked.fen >= last) {
          errors.stop = `invalid_stop_price: a sell stop triggers when the price falls to it: below the last price ${desk.live.last}`;
        } else if (last !== null && side === "buy" && checked.fen <= last) {
          errors.stop = `invalid_stop_price: a buy stop triggers when the price rises to it: above the last price ${desk.live.last}`;
        } else stop = stopText;
      }
    }
    mark("order-qty", "order-qty-error", errors.qty);
    mark("order-price", "order-price-error", errors.price);
    mark("order-stop-price", "order-stop-error", errors.stop);
    const blocked = Object.keys(errors).length > 0;
    // What is typed and wrong keeps the button off (and Enter from sending); at a submit the button stays as it was.
    if (!submitting) $("order-submit").disabled = blocked || !canTrade();
    const amountFen = !errors.qty && !qty.error && price !== null ? qty.qty * toFen(price) : null;
    $("order-amount").textContent = amountFen !== null ? `amount 金额 ${fenText(amountFen)} CNY (fees extra)` : "";
    if (blocked) return null;
    const order = { ts_code: $("order-ts-code").value.trim().toUpperCase(), side, qty: qty.qty };
    return { type, order, price, stop, marketType: $("order-market-type").value };
  }

  async function placeTicket(event) {
    event.preventDefault();
    const out = $("order-result");
    const checked = validateTicket(true);
    desk.attempted = !checked;
    if (!checked) {
      out.replaceChildren();
      const first = document.querySelector("#order-form .is-invalid");
      if (first) first.focus();
      return;
    }
    const { type, order, price, stop, marketType } = checked;
    let path = "/api/v1/orders";
    let body;
    // The market type travels only when it is not the default, so the order reads as before for a client (or a
    // service) that does not know the field.
    const mt = marketType && marketType !== DEFAULT_MARKET_TYPE ? { market_type: marketType } : {};
    if (type === "limit") {
      body = { client_order_id: window.LH.newClientOrderId(), ...order, order_type: "limit", ...(price ? { price } : {}) };
    } else if (type === "market") {
      body = { client_order_id: window.LH.newClientOrderId(), ...order, order_type: "market", ...mt, ...(price ? { price } : {}) };
    } else {
      // Stops are held by execution (docs/conditional-orders.md): a stop's child is a market order, a stop-limit's a
      // limit order at `price`.
      path = "/api/v1/conditional-orders";
      body = type === "stop"
        ? { ...order, kind: "stop", stop_price: stop, ...mt }
        : { ...order, kind: "stop_limit", stop_price: stop, price };
    }
    $("order-submit").disabled = true;
    out.replaceChildren(el("div", { class: "text-body-secondary small", text: "Sending…" }));
    try {
      const result = await api(path, { method: "POST", json: body });
      out.replaceChildren(type === "stop" || type === "stop_limit" ? conditionalResult(result) : window.LH.renderOrderResult(result));
      if (result.status === 503 && result.data && result.data.code === "broker_unavailable") refreshBroker();
      if (result.ok) {
        window.LH.refreshOrders();
        refreshConditionals();
      }
      window.LH.refreshAccount();
    } finally {
      validateTicket(false);
    }
  }

  function conditionalResult(result) {
    if (!result.ok) return window.LH.renderOrderResult(result);
    const c = result.data || {};
    return el(
      "div",
      { class: "alert alert-success mb-0", role: "status" },
      el("strong", { text: "Stop order armed. " }),
      `${fmt(c.conditional_id)} · ${fmt(c.kind)} · ${fmt(c.status)}`,
    );
  }

  // --- open orders: cancel, amend, cancel-all ---------------------------------------------------------------------

  function onOrders(orders) {
    desk.openOrders = orders.filter((o) => window.LH.OPEN_STATUSES.has(o.status));
    renderOpenOrders();
  }

  async function refreshConditionals() {
    if (!state.session) return;
    const result = await api("/api/v1/conditional-orders");
    if (!state.session) return;
    if (result.ok && Array.isArray(result.data)) {
      desk.conditionals = result.data.filter((c) => OPEN_CONDITIONAL.has(c.status));
      renderOpenOrders();
    }
  }

  function openResult(message, kind) {
    const box = $("open-orders-result");
    box.className = `card-footer small ${kind === "ok" ? "text-success" : "text-danger"}`;
    box.textContent = message || "";
    show(box, !!message);
  }

  function renderOpenOrders() {
    const allowed = canTrade();
    const rows = [];
    for (const o of desk.openOrders) {
      const actions = el("td", { class: "text-end text-nowrap" });
      if (allowed) {
        if (o.order_type === "limit") {
          actions.append(el("button", {
            class: "btn btn-outline-primary btn-sm me-1", type: "button", text: "Amend 改单", "data-action": "amend",
            onclick: () => openAmend(o),
          }));
        }
        actions.append(el("button", {
          class: "btn btn-outline-danger btn-sm", type: "button", text: "Cancel 撤单", "data-action": "cancel",
          onclick: (event) => {
            event.currentTarget.disabled = true;
            window.LH.cancelOrder(o.order_id);
          },
        }));
      }
      rows.push(el(
        "tr",
        { id: `open-order-${o.order_id}`, "data-order": o.order_id },
        el("td", { class: "mono small", text: o.order_id, title: `client id ${fmt(o.client_order_id)}` }),
        el("td", { class: "mono", text: fmt(o.ts_code) }),
        el("td", { class: `side-${o.side}`, text: fmt(o.side) }),
        el("td", { text: o.market_type && o.order_type === "market" ? `market · ${o.market_type}` : fmt(o.order_type) }),
        el("td", { class: "text-end", text: groupDigits(o.qty) }),
        el("td", { class: "text-end mono", text: fmt(o.price) }),
        el("td", {}, el("span", { class: "badge text-bg-primary", text: fmt(o.status) })),
        el("td", { class: "text-end", text: groupDigits(o.filled_qty) }),
        actions,
      ));
      if (desk.amending && desk.amending.orderId === o.order_id) rows.push(amendRow(o));
    }
    for (const c of desk.conditionals) {
      const actions = el("td", { class: "text-end" });
      if (allowed) {
        actions.append(el("button", {
          class: "btn btn-outline-danger btn-sm", type: "button", text: "Cancel 撤单", "data-action": "cancel",
          onclick: (event) => {
            event.currentTarget.disabled = true;
            cancelConditional(c.conditional_id);
          },
        }));
      }
      const trigger = c.stop_price != null ? `stop ${c.stop_price}` : c.level != null ? `at ${c.level}` : fmt(c.at);
      rows.push(el(
        "tr",
        { id: `open-cond-${c.conditional_id}` },
        el("td", { class: "mono small", text: c.conditional_id }),
        el("td", { class: "mono", text: fmt(c.ts_code) }),
        el("td", { class: `side-${c.side}`, text: fmt(c.side) }),
        el("td", { text: fmt(c.kind) }),
        el("td", { class: "text-end", text: groupDigits(c.qty) }),
        el("td", { class: "text-end mono", text: `${trigger}${c.price != null ? ` → ${c.price}` : ""}` }),
        el("td", {}, el("span", { class: "badge text-bg-warning", text: fmt(c.status) })),
        el("td", { class: "text-end", text: "—" }),
        actions,
      ));
    }
    if (desk.amending && !desk.openOrders.some((o) => o.order_id === desk.amending.orderId)) desk.amending = null;
    if (!rows.length) rows.push(el("tr", {}, el("td", { colspan: "9", class: "text-body-secondary small", text: "No open orders." })));
    $("open-orders").replaceChildren(...rows);
    const count = desk.openOrders.length + desk.conditionals.length;
    $("cancel-all").disabled = !allowed || count === 0;
  }

  function openAmend(o) {
    desk.amending = desk.amending && desk.amending.orderId === o.order_id
      ? null
      : { orderId: o.order_id, price: String(o.price ?? ""), qty: String(o.qty), error: "" };
    renderOpenOrders();
  }

  function amendRow(o) {
    const draft = desk.amending;
    const price = el("input", { class: "form-control form-control-sm amend-price", inputmode: "decimal", "aria-label": "new price", value: draft.price });
    const qty = el("input", { class: "form-control form-control-sm amend-qty", inputmode: "numeric", "aria-label": "new total quantity", value: draft.qty });
    price.addEventListener("input", () => { draft.price = price.value; });
    qty.addEventListener("input", () => { draft.qty = qty.value; });
    const send = el("button", { class: "btn btn-primary btn-sm", type: "button", text: "Send amend", onclick: () => sendAmend(o) });
    return el(
      "tr",
      { id: `amend-${o.order_id}`, class: "table-light" },
      el("td", { colspan: "9" }, el(
        "div",
        { class: "d-flex flex-wrap gap-2 align-items-center" },
        el("span", { class: "small", text: "New price 新价格" }), price,
        el("span", { class: "small", text: "New total qty 新数量" }), qty,
        send,
        el("button", { class: "btn btn-outline-secondary btn-sm", type: "button", text: "Close", onclick: () => openAmend(o) }),
        el("span", { class: "small text-danger amend-error", text: draft.error || "" }),
        el("span", { class: "small text-body-secondary w-100", text: `Cancel-replace: the replacement is placed once the cancel is confirmed, for the new total less what has filled (${groupDigits(o.filled_qty)}).` }),
      )),
    );
  }

  async function sendAmend(o) {
    const draft = desk.amending;
    if (!draft) return;
    const body = {};
    const priceText = draft.price.trim();
    const qtyText = draft.qty.trim();
    if (priceText !== "" && priceText !== String(o.price)) {
      const fen = toFen(priceText);
      if (!/^\d+(\.\d+)?$/.test(priceText) || fen === null) {
        draft.error = `price_tick: price ${priceText} is not on the 0.01 tick`;
        renderOpenOrders();
        return;
      }
      body.price = priceText;
    }
    if (qtyText !== "" && qtyText !== String(o.qty)) {
      if (!/^[0-9]+$/.test(qtyText) || Number(qtyText) <= Number(o.filled_qty || 0)) {
        draft.error = `qty: the new total must be whole shares above what has filled (${o.filled_qty || 0})`;
        renderOpenOrders();
        return;
      }
      body.qty = Number(qtyText);
    }
    if (!Object.keys(body).length) {
      draft.error = "Change the price or the quantity.";
      renderOpenOrders();
      return;
    }
    const result = await api(`/api/v1/orders/${encodeURIComponent(o.order_id)}/amend`, { method: "POST", json: body });
    if (result.ok) {
      desk.amending = null;
      // 202 with the amend (docs/order-path.md, amending): `replaced` at once on the paper broker; on QMT it follows
      // the broker's cancel report (the order's row changes as the events arrive).
      const a = result.data || {};
      const reasons = Array.isArray(a.reasons) && a.reasons.length ? ` · ${a.reasons.map((r) => `${r.code}: ${r.message}`).join("; ")}` : "";
      const refused = a.status === "replacement_refused";
      openResult(
        `Amend ${fmt(a.amend_id)} of ${o.order_id}: ${fmt(a.status)}` +
          (a.replacement_order_id ? ` · replacement ${a.replacement_order_id} for ${groupDigits(a.replacement_qty)} @ ${fmt(a.new_price)}` : "") +
          (refused ? " · the original stays cancelled" : "") + reasons,
        refused ? "error" : "ok",
      );
    } else {
      draft.error = errorText(result);
      openResult(`Amend ${o.order_id}: ${errorText(result)}`, "error");
    }
    window.LH.refreshOrders();
    window.LH.refreshAccount();
  }

  async function cancelConditional(conditionalId) {
    const result = await api(`/api/v1/conditional-orders/${encodeURIComponent(conditionalId)}/cancel`, { method: "POST" });
    openResult(result.ok ? `Cancelled ${conditionalId}` : `Cancel ${conditionalId}: ${errorText(result)}`, result.ok ? "ok" : "error");
    refreshConditionals();
  }

  // Two clicks: the first arms the button (for a few seconds), the second sends. No confirm() dialog.
  async function cancelAll() {
    const button = $("cancel-all");
    if (!desk.cancelAllTimer) {
      const count = desk.openOrders.length + desk.conditionals.length;
      button.textContent = `Confirm: cancel ${count} 确认全撤`;
      button.classList.replace("btn-outline-danger", "btn-danger");
      desk.cancelAllTimer = setTimeout(disarmCancelAll, CANCEL_ALL_ARM_MS);
      return;
    }
    disarmCancelAll();
    button.disabled = true;
    const result = await api("/api/v1/orders/cancel-all", { method: "POST", json: {} });
    if (result.ok) {
      const r = result.data || {};
      const failed = Array.isArray(r.failed) ? r.failed : [];
      openResult(
        `Cancel-all: ${fmt(r.requested)} asked · ${(r.cancelled || []).length} cancelled · ` +
          `${(r.cancel_requested || []).length} cancel requested` +
          ((r.conditional_cancelled || []).length ? ` · ${r.conditional_cancelled.length} conditional cancelled` : "") +
          (failed.length ? ` · failed: ${failed.map((f) => `${f.order_id} ${f.code}`).join(", ")}` : ""),
        failed.length ? "error" : "ok",
      );
    } else {
      openResult(`Cancel-all: ${errorText(result)}`, "error");
    }
    window.LH.refreshOrders();
    window.LH.refreshAccount();
    refreshConditionals();
  }

  function disarmCancelAll() {
    clearTimeout(desk.cancelAllTimer);
    desk.cancelAllTimer = null;
    const button = $("cancel-all");
    button.textContent = "Cancel all 全撤";
    button.classList.replace("btn-danger", "btn-outline-danger");
  }

  // --- account: summary and positions ---------------------------------------------------------------------------

  function clearAccount() {
    $("account-id").textContent = "";
    $("account-updated").textContent = "";
    for (const id of ["account-total", "account-balance", "account-available", "account-reserved", "account-market-value",
      "account-pnl-today", "account-pnl-total", "account-realised"]) {
      $(id).textContent = "—";
      $(id).classList.remove("return-up", "return-down");
    }
    show($("account-cash"), false);
    show($("account-note"), false);
    show($("positions-note"), false);
    show($("account-error"), false);
    $("positions").replaceChildren();
    desk.positions.clear();
  }

  function isQuietRefusal(result) {
    return result.status === 403 || result.status === 404;
  }

  function renderAccount(cash, positions) {
    const errors = [];
    renderCash(cash, errors);
    renderPositions(positions, errors);
    $("account-error").textContent = errors.join(" · ");
    show($("account-error"), errors.length > 0);
    $("account-updated").textContent = `updated ${new Date().toLocaleTimeString("zh-CN", { hour12: false })}`;
    $("order-qty-hint").textContent = lotHint(security(), $("order-side").value);
    validateTicket(false); // a sell's check reads the sellable quantity
  }

  function setFigure(id, value, signed) {
    const node = $(id);
    node.textContent = value === undefined || value === null ? "—" : window.LH.money(value);
    node.classList.remove("return-up", "return-down");
    if (signed) {
      const cls = signClass(value);
      if (cls) node.classList.add(cls);
    }
  }

  function renderCash(result, errors) {
    const note = $("account-note");
    const data = result.data;
    if (result.ok && data && typeof data === "object") {
      $("account-id").textContent = data.account_id ? `· ${data.account_id}` : "";
      setFigure("account-total", data.total_assets);
      setFigure("account-balance", data.balance);
      setFigure("account-available", data.available);
      setFigure("account-reserved", data.reserved);
      setFigure("account-market-value", data.market_value);
      setFigure("account-pnl-today", data.pnl_today, true);
      setFigure("account-pnl-total", data.pnl_total, true);
      setFigure("account-realised", data.realised_pnl, true);
      show($("account-cash"), true);
      const unpriced = Array.isArray(data.unpriced) ? data.unpriced : [];
      note.textContent = unpriced.length ? `No price for ${unpriced.join(", ")}: the totals that need one are not shown.` : "";
      show(note, unpriced.length > 0);
    } else if (isQuietRefusal(result)) {
      $("account-id").textContent = "";
      show($("account-cash"), false);
      note.textContent = `No cash account for this login (${errorText(result)}).`;
      show(note, true);
    } else {
      errors.push(`Could not load cash: ${errorText(result)}`); // the last figures stay, marked stale by the error
    }
  }

  function renderPositions(result, errors) {
    const note = $("positions-note");
    if (result.ok) {
      const data = result.data;
      const rows = Array.isArray(data) ? data : (data && (data.positions || data.items)) || [];
      rows.sort((a, b) => String(a.ts_code || "").localeCompare(String(b.ts_code || "")));
      desk.positions = new Map(rows.map((p) => [p.ts_code, p]));
      syncSubscriptions();
      $("positions").replaceChildren(...rows.map(positionRow));
      if (!rows.length) {
        $("positions").append(el("tr", {}, el("td", { colspan: "12", class: "text-body-secondary small", text: "No positions." })));
      }
      show(note, false);
    } else if (isQuietRefusal(result)) {
      $("positions").replaceChildren();
      note.textContent = `Positions are not available for this login (${errorText(result)}).`;
      show(note, true);
    } else {
      errors.push(`Could not load positions: ${errorText(result)}`);
    }
  }

  function positionRow(p) {
    const s = state.securities.get(p.ts_code);
    const cell = (field, text, extra = "") => el("td", { class: `text-end mono pos-${field} ${extra}`, text });
    return el(
      "tr",
      { id: `position-${p.ts_code}` },
      el(
        "td",
        {},
        el("span", { class: "mono", text: fmt(p.ts_code) }),
        s && s.name ? el("span", { class: "small text-body-secondary ms-2", text: s.name }) : null,
      ),
      cell("qty", groupDigits(p.qty)),
      cell("sellable", groupDigits(p.sellable_qty)),
      cell("frozen", groupDigits(p.frozen_qty)),
      cell("today", `${groupDigits(p.today_buy_qty ?? 0)} / ${groupDigits(p.today_sell_qty ?? 0)}`),
      cell("avg-cost", fmt(p.avg_cost)),
      cell("cost", groupDigits(p.cost_basis)),
      el("td", { class: "text-end mono pos-last", text: fmt(p.last_price), title: p.price_source ? `${p.price_source} · ${fmt(p.price_as_of)}` : undefined }),
      cell("value", groupDigits(p.market_value)),
      cell("unrealised", groupDigits(p.unrealised_pnl), signClass(p.unrealised_pnl)),
      cell("realised", groupDigits(p.realised_pnl), signClass(p.realised_pnl)),
      cell("pnl-today", groupDigits(p.pnl_today), signClass(p.pnl_today)),
    );
  }

  // --- transaction cost analysis (docs/tca.md) --------------------------------------------------------------------

  const TCA_ORDER_COLUMNS = [
    ["Order", (t) => t.order_id, "mono small"],
    ["Day", (t) => t.day, "small"],
    ["Security", (t) => t.ts_code, "mono"],
    ["Side", (t) => t.side, (t) => `side-${t.side}`],
    ["Filled", (t) => groupDigits(t.filled_qty), "text-end"],
    ["Fill VWAP", (t) => fmt(t.fill_vwap), "text-end mono tca-vwap"],
    ["Arrival", (t) => (t.arrival_price == null ? "—" : `${t.arrival_price} (${t.arrival_source})`), "text-end mono tca-arrival"],
    ["vs arrival CNY", (t) => fmt(t.slippage_vs_arrival), "text-end mono"],
    ["vs arrival bps", (t) => fmt(t.slippage_vs_arrival_bps), "text-end mono"],
    ["Interval VWAP", (t) => fmt(t.interval_vwap), "text-end mono"],
    ["vs interval bps", (t) => fmt(t.slippage_vs_interval_bps), "text-end mono"],
    ["Fees", (t) => fmt(t.fees), "text-end mono tca-fees"],
    ["Fees bps", (t) => fmt(t.fees_bps), "text-end mono"],
  ];
  const TCA_GROUP_COLUMNS = [
    ["Key", (g) => (g.key == null ? "(own orders)" : g.key), "mono small"],
    ["Orders", (g) => `${g.filled_orders} / ${g.orders}`, "text-end"],
    ["Filled amount", (g) => groupDigits(g.filled_amount), "text-end mono"],
    ["Fees", (g) => fmt(g.fees), "text-end mono"],
    ["Fees bps", (g) => fmt(g.fees_bps), "text-end mono"],
    ["vs arrival CNY", (g) => fmt(g.slippage_vs_arrival), "text-end mono"],
    ["vs arrival bps", (g) => fmt(g.slippage_vs_arrival_bps), "text-end mono"],
    ["vs interval CNY", (g) => fmt(g.slippage_vs_interval), "text-end mono"],
    ["vs interval bps", (g) => fmt(g.slippage_vs_interval_bps), "text-end mono"],
  ];

  function tcaTable(columns, rows, idOf) {
    $("tca-head").replaceChildren(el("tr", {}, ...columns.map(([title, , cls]) =>
      el("th", { class: typeof cls === "string" && cls.includes("text-end") ? "text-end" : undefined, text: title }))));
    $("tca").replaceChildren(...rows.map((row) => el(
      "tr",
      { id: idOf(row) },
      ...columns.map(([, value, cls]) => el("td", { class: typeof cls === "function" ? cls(row) : cls, text: value(row) ?? "—" })),
    )));
    if (!rows.length) $("tca").append(el("tr", {}, el("td", { colspan: String(columns.length), class: "text-body-secondary small", text: "No orders to analyse yet." })));
  }

  async function refreshTca() {
    if (!state.session) return;
    const by = $("tca-by").value;
    const seq = ++desk.tcaSeq;
    const result = by === "orders"
      ? await api("/api/v1/tca/orders?filled_only=true&limit=1000")
      : await api(`/api/v1/tca/summary?by=${encodeURIComponent(by)}`);
    if (!state.session || seq !== desk.tcaSeq) return;
    if (!result.ok) {
      $("tca-error").textContent = `Could not load the cost analysis: ${errorText(result)}`;
      show($("tca-error"), true);
      return;
    }
    show($("tca-error"), false);
    if (by === "orders") {
      const rows = (Array.isArray(result.data) ? result.data : []).slice(-TCA_ROWS).reverse(); // newest first
      tcaTable(TCA_ORDER_COLUMNS, rows, (t) => `tca-${t.order_id}`);
    } else {
      const data = result.data || {};
      const groups = [...(data.groups || []), ...(data.total ? [{ ...data.total, key: "total 合计" }] : [])];
      tcaTable(TCA_GROUP_COLUMNS, groups, (g) => `tca-group-${g.key ?? "own"}`);
    }
  }

  let tcaSoon = null;
  function scheduleTcaRefresh() {
    clearTimeout(tcaSoon);
    tcaSoon = setTimeout(refreshTca, 1000);
  }

  // --- the QMT bridge: a banner on the ticket, a badge for admins (docs/qmt-bridge.md) -----------------------------

  const REFUSALS = {
    broker_unavailable: (b) => `Orders are refused: broker_unavailable — the QMT bridge ${fmt(b.bridge_id)} is not connected (or its MiniQMT is down). Nothing is sent until it is back.`,
    trading_disabled: (b) => `Orders are rejected: trading is disabled on QMT bridge ${fmt(b.bridge_id)} (an admin's switch).`,
  };

  async function refreshBroker() {
    clearTimeout(desk.brokerTimer);
    if (!state.session) return;
    const accountId = state.session.accountId;
    const [mine, bridges] = await Promise.all([
      accountId ? api(`/api/v1/accounts/${encodeURIComponent(accountId)}/broker`) : Promise.resolve(null),
      state.session.role === "admin" ? api("/api/v1/bridges") : Promise.resolve(null),
    ]);
    if (!state.session) return;
    const banner = $("ticket-bridge-banner");
    if (mine && mine.ok && mine.data) {
      desk.broker = mine.data;
      const b = mine.data;
      $("ticket-broker").textContent = b.broker === "qmt" ? `broker: QMT ${fmt(b.bridge_id)}` : "broker: paper 模拟";
      const message = b.orders_refused ? (REFUSALS[b.orders_refused] || (() => `Orders are refused: ${b.orders_refused}`))(b) : "";
      banner.textContent = message;
      banner.dataset.refused = b.orders_refused || "";
      show(banner, !!message);
    } else {
      show(banner, false);
    }
    const badge = $("bridge-status");
    if (bridges && bridges.ok && Array.isArray(bridges.data) && bridges.data.length) {
      const down = bridges.data.filter((b) => !b.connected || b.qmt === "disconnected");
      const off = bridges.data.filter((b) => b.connected && b.qmt !== "disconnected" && (!b.trading.enabled || b.trading.read_only));
      const parts = [
        ...down.map((b) => `${b.bridge_id} disconnected`),
        ...off.map((b) => `${b.bridge_id} trading off`),
      ];
      badge.textContent = parts.length ? `QMT: ${parts.join(" · ")}` : `QMT: ${bridges.data.length} connected`;
      badge.className = `badge ${down.length ? "text-bg-danger" : off.length ? "text-bg-warning" : "text-bg-success"}`;
      badge.title = bridges.data.map((b) => `${b.bridge_id} → ${fmt(b.account_id)}: ${b.connected ? "connected" : "not connected"}` +
        `${b.qmt ? `, MiniQMT ${b.qmt}` : ""}, trading ${b.trading.enabled ? (b.trading.read_only ? "read-only" : "on") : "off"}`).join("\n");
      show(badge, true);
    } else {
      show(badge, false);
    }
    desk.brokerTimer = setTimeout(refreshBroker, BROKER_POLL_MS);
  }

  // --- life cycle -------------------------------------------------------------------------------------------------

  function start() {
    disarmCancelAll();
    refreshConditionals();
    refreshTca();
    refreshBroker();
    onTypeChange();
  }

  function stop() {
    clearTimeout(desk.brokerTimer);
    clearTimeout(desk.revalueTimer);
    desk.revalueTimer = null;
    desk.subscribed = new Set();
    disarmCancelAll();
    desk.openOrders = [];
    desk.conditionals = [];
    desk.amending = null;
    desk.broker = null;
    desk.tcaSeq += 1;
    $("open-orders").replaceChildren();
    show($("open-orders-result"), false);
    $("tca").replaceChildren();
    show($("ticket-bridge-banner"), false);
    show($("bridge-status"), false);
    clearAccount();
  }

  // Order, trade and conditional events: the open orders, the stops and the cost table follow.
  function onEvent(type) {
    if (type.startsWith("conditional.")) refreshConditionals();
    if (type.startsWith("trade.") || type === "order.filled") scheduleTcaRefresh();
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("order-form").addEventListener("submit", placeTicket);
    $("order-type").addEventListener("change", onTypeChange);
    $("order-ts-code").addEventListener("input", () => {
      describeSecurity();
      onTypeChange();
    });
    $("order-side").addEventListener("change", describeSecurity);
    for (const id of ["order-qty", "order-price", "order-stop-price", "order-market-type"]) {
      $(id).addEventListener("input", () => validateTicket(false));
    }
    $("cancel-all").addEventListener("click", cancelAll);
    $("tca-by").addEventListener("change", refreshTca);
    $("tca-refresh").addEventListener("click", refreshTca);
  });

  return { start, stop, onSocketOpen, onQuote, onOrders, renderAccount, clearAccount, describeSecurity, onEvent, refreshTca };
})();
