// LiangHua web UI, the trader's desk (issue 15 §3): the order ticket with its price ladder (limit, market with the
// exchange's market types, stop and stop-limit), the open orders with cancel / amend / cancel-all, positions and the
// account summary, the cost analysis (TCA) table, and the QMT bridge's state (a banner on the ticket; a badge for
// admins). Loaded after app.js, whose core (api, el, the session) it uses through window.LH.
// The checks made here as the trader types are a convenience: the services decide, and their refusal (a 4xx code and
// message) is shown as they give it.
"use strict";

window.LHDesk = (() => {
  const { $, api, el, show, fmt, groupDigits, errorText, state } = window.LH;
  const { t, word } = window.LHI18n;

  const OPEN_CONDITIONAL = new Set(["waiting", "armed"]);
  const BROKER_POLL_MS = 10000;
  const TCA_ROWS = 50;
  const CANCEL_ALL_ARM_MS = 5000;
  const HELD_CODES = 40; // held codes whose quotes revalue the positions (the socket takes 50 codes: one is the ticket's)
  const REVALUE_MS = 3000; // at most one positions read per this, however many quotes arrive
  // The market order types are served with each security (`market_types`, from shared/core/market/order_types.py);
  // these are only their names on the screen.
  const DEFAULT_MARKET_TYPE = "counterparty_best";
  // The ticket's fees and the most shares an order may take are execution's (GET /v1/orders/estimate: the fee rule
  // of shared/core/market/rules.py on the order session's date, the code's lot, the available cash or the sellable
  // shares), asked for as the ticket changes, at most once per ESTIMATE_WAIT_MS.
  const ESTIMATE_WAIT_MS = 250;

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
    prefilled: null, // the code whose price was put in the ticket from its quote (once: a cleared field stays clear)
    pending: null, // the checked order awaiting its confirmation
    cash: null, // GET /account as last read: `available` sizes the maximum buy
    trades: [],
    tradesSeq: 0,
    tradesUpdated: null,
    accountUpdated: null,
    lastResult: null, // the ticket's last answer, drawn again on a language switch
    openNote: null, // the open orders' last message: [key, vars, kind]
    estimate: null, // the ticket's estimate: {key, params, seq, data (the answer), error (a failed read's answer)}
    estimateSeq: 0, // the last estimate asked for: an answer to an earlier one is dropped
    estimateTimer: null,
  };

  // The desk's words (the shared ones — statuses, sides, types, errors — are i18n.js's).
  window.LHI18n.add({
    zh: {
      "desk.ticket": "下单",
      "desk.readonly": "您的角色是观察员：只能查看，不能交易。",
      "desk.security": "证券代码",
      "desk.ladder": "五档行情",
      "desk.limit_up": "涨停",
      "desk.limit_down": "跌停",
      "desk.ladder_hint": "点击价格填入委托。",
      "desk.ladder_pick": "填入此价格",
      "desk.ask": "卖{n}",
      "desk.bid": "买{n}",
      "desk.last": "最新",
      "desk.pre": "昨收 {price}",
      "desk.side": "买卖",
      "desk.type": "委托类型",
      "desk.market_type": "市价类型",
      "desk.stop_price": "触发价（元）",
      "desk.qty": "数量（股）",
      "desk.price": "价格（元）",
      "desk.protection": "保护限价（元）",
      "desk.tick_up": "价格升一档（0.01）",
      "desk.tick_down": "价格降一档（0.01）",
      "desk.submit": "下单",
      "desk.confirm": "确认下单",
      "desk.confirm_back": "返回修改",
      "desk.confirm_text": "请确认：{side} {code} {name} · {type} · {qty} 股 @ {price}",
      "desk.confirm_amount": "金额 {amount} 元，估算费用 {fees} 元",
      "desk.open_orders": "当前委托",
      "desk.events": "实时事件",
      "desk.clear": "清空",
      "desk.no_events": "暂无事件。",
      "desk.account": "账户",
      "desk.orders": "委托",
      "desk.trades": "成交",
      "desk.tca": "交易成本分析（TCA）",
      "desk.tca_view": "TCA 视图",
      "desk.sending": "发送中…",
      "desk.live_none": "暂无实时行情",
      "desk.live": "实时 {last}（昨收 {pre}）· 买一 {bid} · 卖一 {ask} · 量 {vol} · {time}",
      "desk.amount": "金额 {amount} 元（另计费用）",
      "desk.fees": "估算费用 {fees} 元（佣金 {commission}，过户费 {transfer}{stamp}）",
      "desk.fees_stamp": "，印花税 {stamp}",
      "desk.max_buy": "最大可买 {qty} 股（可用 {cash} 元）",
      "desk.max_sell": "可卖 {qty} 股",
      "desk.fees_unknown": "估算费用 — 元",
      "desk.estimate_failed": "无法估算费用与可买/可卖数量：{error}",
      "desk.estimating": "正在估算金额与费用…",
      "desk.qty_lots": "= {lots} 手",
      "desk.qty_odd": "（含零股 {odd} 股）",
      "desk.stop_armed": "止损单已生效。",
      "board.star": "科创板",
      "board.bse": "北交所",
      "board.chinext": "创业板",
      "board.main": "主板",
      "mtype.counterparty_best": "对手方最优",
      "mtype.own_best": "本方最优",
      "mtype.best5_cancel": "最优五档即成剩撤",
      "mtype.best5_limit": "最优五档即成剩转限",
      "mtype.ioc": "即时成交剩余撤销",
      "mtype.fok": "全额成交或撤销",
      "hint.any": "整股。买入以 100 股为一手（科创板至少 200 股，北交所至少 100 股，之后可按 1 股递增）。",
      "hint.lots": "买入须为 {min} 股的整数倍。",
      "hint.board": "{board}买入：至少 {min} 股，之后可按 1 股递增。",
      "hint.sell": "整股。卖出同买入，或卖出全部可卖持仓（可含零股）。{sellable}",
      "hint.sellable": "可卖 {qty} 股。",
      "hint.buy": "整股。{rule}",
      "err.qty_empty": "请输入数量（股）。",
      "err.qty_digits": "只能输入整数股：数字 0-9，不能有小数点、符号或指数。",
      "err.qty_positive": "数量必须是正整数股。",
      "err.lot_buy": "lot_size：买入须为 {min} 股的整数倍",
      "err.lot_board": "lot_size：{board}买入至少 {min} 股",
      "err.lot_over": "lot_size：卖出不能超过持仓（可卖 {sellable} 股）",
      "err.lot_odd": "lot_size：零股只能一次性全部卖出",
      "err.lot_board_sell": "lot_size：{board}卖出不足 {min} 股时须全部卖出",
      "err.price_format": "请输入价格（元），如 10.50",
      "err.price_tick": "price_tick：价格 {price} 不符合 0.01 元的最小变动价位",
      "err.price_zero": "价格必须大于零。",
      "err.price_above": "price_limit：价格 {price} 高于涨停价 {limit}",
      "err.price_below": "price_limit：价格 {price} 低于跌停价 {limit}",
      "err.price_needed": "{type}委托需要价格。",
      "err.protection": "price：科创板市价委托需要保护限价",
      "err.stop_needed": "止损委托需要触发价。",
      "err.stop_sell": "invalid_stop_price：卖出止损在价格跌到触发价时触发，须低于最新价 {last}",
      "err.stop_buy": "invalid_stop_price：买入止损在价格涨到触发价时触发，须高于最新价 {last}",
      "open.none": "暂无当前委托。",
      "open.amend": "改单",
      "open.cancel": "撤单",
      "open.stop": "触发 {price}",
      "open.at": "于 {level}",
      "open.new_price": "新价格",
      "open.new_qty": "新总数量",
      "open.send_amend": "提交改单",
      "open.close": "关闭",
      "open.amend_note": "改单即撤单重下：撤单确认后按新总数量减去已成交（{filled}）下新单。",
      "open.amend_result": "改单 {id}（原委托 {order}）：{status}",
      "open.amend_replacement": " · 新委托 {id}，{qty} 股 @ {price}",
      "open.amend_refused": " · 原委托保持已撤",
      "open.amend_failed": "改单 {order}：{reason}",
      "open.amend_tick": "price_tick：价格 {price} 不符合 0.01 元的最小变动价位",
      "open.amend_qty": "qty：新总数量须为整数股，且大于已成交（{filled}）",
      "open.amend_nothing": "请修改价格或数量。",
      "open.cond_cancelled": "已撤 {id}",
      "open.cond_cancel_failed": "撤单 {id}：{reason}",
      "open.cancel_all": "全撤",
      "open.cancel_all_confirm": "确认全撤 {count} 笔",
      "open.cancel_all_result": "全撤：请求 {requested} 笔 · 已撤 {cancelled} 笔 · 撤单中 {requesting} 笔",
      "open.cancel_all_cond": " · 条件单已撤 {count} 笔",
      "open.cancel_all_failed": " · 失败：{list}",
      "open.cancel_all_error": "全撤：{reason}",
      "account.total": "总资产",
      "account.cash": "现金",
      "account.available": "可用",
      "account.reserved": "冻结",
      "account.market_value": "市值",
      "account.pnl_today": "当日盈亏",
      "account.pnl_total": "总盈亏",
      "account.realised": "已实现盈亏",
      "account.unpriced": "{codes} 没有价格：需要价格的合计未显示。",
      "account.no_cash": "此登录没有资金账户（{reason}）。",
      "account.cash_failed": "资金刷新失败：{reason}",
      "account.no_positions": "无持仓。",
      "account.positions_unavailable": "此登录无法查看持仓（{reason}）。",
      "account.positions_failed": "持仓刷新失败：{reason}",
      "pos.position": "持仓",
      "pos.qty": "数量",
      "pos.sellable": "可卖",
      "pos.frozen": "冻结",
      "pos.today": "今买/今卖",
      "pos.avg_cost": "成本价",
      "pos.cost": "成本",
      "pos.last": "现价",
      "pos.value": "市值",
      "pos.unrealised": "浮动盈亏",
      "pos.realised": "已实现",
      "pos.pnl_today": "当日盈亏",
      "trades.failed": "成交刷新失败：{reason}",
      "tca.by_order": "按委托",
      "tca.by_day": "按日",
      "tca.by_instance": "按策略实例",
      "tca.note": "滑点是成本：成交比基准差时为正（买入付得更多，卖出收得更少）。见 docs/tca.md",
      "tca.none": "暂无可分析的委托。",
      "tca.failed": "交易成本分析刷新失败：{reason}",
      "tca.own": "（本人委托）",
      "tca.total": "合计",
      "tca.order": "委托号",
      "tca.day": "日期",
      "tca.security": "证券",
      "tca.side": "买卖",
      "tca.filled": "成交数量",
      "tca.vwap": "成交均价",
      "tca.arrival": "到达价",
      "tca.vs_arrival": "相对到达价（元）",
      "tca.vs_arrival_bps": "相对到达价（基点）",
      "tca.interval_vwap": "区间均价",
      "tca.vs_interval": "相对区间均价（元）",
      "tca.vs_interval_bps": "相对区间均价（基点）",
      "tca.fees": "费用",
      "tca.fees_bps": "费用（基点）",
      "tca.key": "分组",
      "tca.orders": "委托数",
      "tca.filled_amount": "成交金额",
      "broker.qmt": "券商：QMT {id}",
      "broker.paper": "券商：模拟",
      "broker.unavailable": "委托被拒（broker_unavailable）：QMT 通道 {id} 未连接（或其 MiniQMT 未运行）。恢复前不会发送任何委托。",
      "broker.disabled": "委托被拒：QMT 通道 {id} 的交易开关已关闭（管理员操作）。",
      "broker.refused": "委托被拒：{reason}",
      "bridge.disconnected": "{id} 未连接",
      "bridge.off": "{id} 交易关闭",
      "bridge.all": "QMT：{count} 个已连接",
      "bridge.parts": "QMT：{parts}",
    },
    en: {
      "desk.ticket": "Order ticket",
      "desk.readonly": "Your role is viewer: you can watch, not trade.",
      "desk.security": "Security (ts_code)",
      "desk.ladder": "price ladder: five ask and five bid levels",
      "desk.limit_up": "limit-up",
      "desk.limit_down": "limit-down",
      "desk.ladder_hint": "Click a price to put it in the ticket.",
      "desk.ladder_pick": "put this price in the ticket",
      "desk.ask": "ask {n}",
      "desk.bid": "bid {n}",
      "desk.last": "last",
      "desk.pre": "pre {price}",
      "desk.side": "Side",
      "desk.type": "Type",
      "desk.market_type": "Market order type",
      "desk.stop_price": "Stop price (CNY)",
      "desk.qty": "Quantity (shares)",
      "desk.price": "Price (CNY)",
      "desk.protection": "Protection price (CNY)",
      "desk.tick_up": "price one tick up (0.01)",
      "desk.tick_down": "price one tick down (0.01)",
      "desk.submit": "Place order",
      "desk.confirm": "Confirm order",
      "desk.confirm_back": "Back",
      "desk.confirm_text": "Please confirm: {side} {code} {name} · {type} · {qty} shares @ {price}",
      "desk.confirm_amount": "amount {amount} CNY, estimated fees {fees} CNY",
      "desk.open_orders": "Open orders",
      "desk.events": "Live events",
      "desk.clear": "Clear",
      "desk.no_events": "No events yet.",
      "desk.account": "Account",
      "desk.orders": "Orders",
      "desk.trades": "Trades",
      "desk.tca": "Cost analysis (TCA)",
      "desk.tca_view": "TCA view",
      "desk.sending": "Sending…",
      "desk.live_none": "no live quote yet",
      "desk.live": "live {last} (pre {pre}) · bid {bid} · ask {ask} · vol {vol} · {time}",
      "desk.amount": "amount {amount} CNY (fees extra)",
      "desk.fees": "estimated fees {fees} CNY (commission {commission}, transfer {transfer}{stamp})",
      "desk.fees_stamp": ", stamp duty {stamp}",
      "desk.max_buy": "max buy {qty} shares (available {cash} CNY)",
      "desk.max_sell": "sellable {qty} shares",
      "desk.fees_unknown": "estimated fees — CNY",
      "desk.estimate_failed": "cannot estimate the fees and the most shares: {error}",
      "desk.estimating": "estimating the amount and the fees…",
      "desk.qty_lots": "= {lots} lots",
      "desk.qty_odd": "(odd lot {odd} shares)",
      "desk.stop_armed": "Stop order armed.",
      "board.star": "STAR",
      "board.bse": "BSE",
      "board.chinext": "ChiNext",
      "board.main": "main board",
      "mtype.counterparty_best": "counterparty best",
      "mtype.own_best": "own best",
      "mtype.best5_cancel": "best five, rest cancelled",
      "mtype.best5_limit": "best five, rest as limit",
      "mtype.ioc": "immediate or cancel",
      "mtype.fok": "fill or kill",
      "hint.any": "Whole shares. Buys in lots of 100 shares (STAR: at least 200, BSE: at least 100, then any number).",
      "hint.lots": "Buys in lots of {min} shares.",
      "hint.board": "{board} buys: at least {min} shares, then any number.",
      "hint.sell": "Whole shares. Sells as buys, or the whole sellable position (odd lot included).{sellable}",
      "hint.sellable": " {qty} sellable.",
      "hint.buy": "Whole shares. {rule}",
      "err.qty_empty": "Enter a quantity in shares.",
      "err.qty_digits": "Whole shares only: digits 0-9, no decimal point, sign or exponent.",
      "err.qty_positive": "The quantity must be a positive whole number of shares.",
      "err.lot_buy": "lot_size: buys must be in lots of {min} shares",
      "err.lot_board": "lot_size: {board} buys need at least {min} shares",
      "err.lot_over": "lot_size: cannot sell more than the position ({sellable} sellable)",
      "err.lot_odd": "lot_size: odd lots can only be sold as the whole position",
      "err.lot_board_sell": "lot_size: {board} sells below {min} shares must close the whole position",
      "err.price_format": "Enter a price in CNY, digits and a point: 10.50",
      "err.price_tick": "price_tick: price {price} is not on the 0.01 tick",
      "err.price_zero": "The price must be above zero.",
      "err.price_above": "price_limit: price {price} is above the limit-up price {limit}",
      "err.price_below": "price_limit: price {price} is below the limit-down price {limit}",
      "err.price_needed": "A {type} order needs a price.",
      "err.protection": "price: a STAR market order needs its protection price",
      "err.stop_needed": "A stop order needs its stop price.",
      "err.stop_sell": "invalid_stop_price: a sell stop triggers when the price falls to it: below the last price {last}",
      "err.stop_buy": "invalid_stop_price: a buy stop triggers when the price rises to it: above the last price {last}",
      "open.none": "No open orders.",
      "open.amend": "Amend",
      "open.cancel": "Cancel",
      "open.stop": "stop {price}",
      "open.at": "at {level}",
      "open.new_price": "New price",
      "open.new_qty": "New total qty",
      "open.send_amend": "Send amend",
      "open.close": "Close",
      "open.amend_note": "Cancel-replace: the replacement is placed once the cancel is confirmed, for the new total less what has filled ({filled}).",
      "open.amend_result": "Amend {id} of {order}: {status}",
      "open.amend_replacement": " · replacement {id} for {qty} @ {price}",
      "open.amend_refused": " · the original stays cancelled",
      "open.amend_failed": "Amend {order}: {reason}",
      "open.amend_tick": "price_tick: price {price} is not on the 0.01 tick",
      "open.amend_qty": "qty: the new total must be whole shares above what has filled ({filled})",
      "open.amend_nothing": "Change the price or the quantity.",
      "open.cond_cancelled": "Cancelled {id}",
      "open.cond_cancel_failed": "Cancel {id}: {reason}",
      "open.cancel_all": "Cancel all",
      "open.cancel_all_confirm": "Confirm: cancel {count}",
      "open.cancel_all_result": "Cancel-all: {requested} asked · {cancelled} cancelled · {requesting} cancel requested",
      "open.cancel_all_cond": " · {count} conditional cancelled",
      "open.cancel_all_failed": " · failed: {list}",
      "open.cancel_all_error": "Cancel-all: {reason}",
      "account.total": "Total assets",
      "account.cash": "Cash",
      "account.available": "Available",
      "account.reserved": "Reserved",
      "account.market_value": "Market value",
      "account.pnl_today": "P&L today",
      "account.pnl_total": "P&L total",
      "account.realised": "Realised",
      "account.unpriced": "No price for {codes}: the totals that need one are not shown.",
      "account.no_cash": "No cash account for this login ({reason}).",
      "account.cash_failed": "Could not load cash: {reason}",
      "account.no_positions": "No positions.",
      "account.positions_unavailable": "Positions are not available for this login ({reason}).",
      "account.positions_failed": "Could not load positions: {reason}",
      "pos.position": "Position",
      "pos.qty": "Qty",
      "pos.sellable": "Sellable",
      "pos.frozen": "Frozen",
      "pos.today": "Today buy/sell",
      "pos.avg_cost": "Avg cost",
      "pos.cost": "Cost basis",
      "pos.last": "Last",
      "pos.value": "Market value",
      "pos.unrealised": "Unrealised",
      "pos.realised": "Realised",
      "pos.pnl_today": "Today",
      "trades.failed": "Could not load trades: {reason}",
      "tca.by_order": "by order",
      "tca.by_day": "by day",
      "tca.by_instance": "by strategy instance",
      "tca.note": "Slippage is a cost: positive when the fills were worse than the benchmark (a buy paid more, a sell got less). docs/tca.md",
      "tca.none": "No orders to analyse yet.",
      "tca.failed": "Could not load the cost analysis: {reason}",
      "tca.own": "(own orders)",
      "tca.total": "total",
      "tca.order": "Order",
      "tca.day": "Day",
      "tca.security": "Security",
      "tca.side": "Side",
      "tca.filled": "Filled",
      "tca.vwap": "Fill VWAP",
      "tca.arrival": "Arrival",
      "tca.vs_arrival": "vs arrival CNY",
      "tca.vs_arrival_bps": "vs arrival bps",
      "tca.interval_vwap": "Interval VWAP",
      "tca.vs_interval": "vs interval CNY",
      "tca.vs_interval_bps": "vs interval bps",
      "tca.fees": "Fees",
      "tca.fees_bps": "Fees bps",
      "tca.key": "Key",
      "tca.orders": "Orders",
      "tca.filled_amount": "Filled amount",
      "broker.qmt": "broker: QMT {id}",
      "broker.paper": "broker: paper",
      "broker.unavailable": "Orders are refused: broker_unavailable — the QMT bridge {id} is not connected (or its MiniQMT is down). Nothing is sent until it is back.",
      "broker.disabled": "Orders are rejected: trading is disabled on QMT bridge {id} (an admin's switch).",
      "broker.refused": "Orders are refused: {reason}",
      "bridge.disconnected": "{id} disconnected",
      "bridge.off": "{id} trading off",
      "bridge.all": "QMT: {count} connected",
      "bridge.parts": "QMT: {parts}",
    },
  });

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

  // 1050 -> "10.50": a price as typed in a field (no separators).
  function plainFen(fen) {
    return `${Math.floor(fen / 100)}.${String(fen % 100).padStart(2, "0")}`;
  }

  function signClass(value) {
    const text = window.LH.plainDecimal(String(value ?? "")); // "0E-8" is zero: no colour
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
      ? `${s.name} · ${s.exchange || ""} ${word("board", s.board)}${s.is_st ? " · ST" : ""}`
      : "";
    $("order-qty-hint").textContent = lotHint(s, $("order-side").value);
    fillMarketTypes(s);
    watchQuote(s ? s.ts_code : null);
    validateTicket(false);
  }

  function lotHint(s, side) {
    if (!s) return t("hint.any");
    const lots = lotOf(s);
    const buys = lots.step === lots.min
      ? t("hint.lots", { min: lots.min })
      : t("hint.board", { board: word("board", s.board), min: lots.min });
    if (side === "sell") {
      const held = desk.positions.get(s.ts_code);
      const sellable = held ? t("hint.sellable", { qty: groupDigits(held.sellable_qty) }) : "";
      return t("hint.sell", { sellable });
    }
    return t("hint.buy", { rule: buys });
  }

  // The quantity typed, in lots as it is typed (100 shares a lot): shown, never changed.
  function qtyInLots() {
    const text = $("order-qty").value.trim();
    if (!/^[0-9]+$/.test(text) || Number(text) <= 0) return "";
    const qty = Number(text);
    const lots = Math.floor(qty / 100);
    const odd = qty % 100;
    return `${groupDigits(String(qty))} ${t("desk.qty_lots", { lots: groupDigits(String(lots)) })}${odd ? ` ${t("desk.qty_odd", { odd })}` : ""}`;
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
    select.replaceChildren(...types.map((value) => el("option", { value, text: word("mtype", value) })));
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
    else if (live.data && live.data.code === "no_live_quote") $("order-live-quote").textContent = t("desk.live_none");
    prefillPrice();
    renderLadder();
    validateTicket(false);
  }

  // The ticket's price, once per code: its live last price, else its last close (a cleared field stays clear).
  function prefillPrice() {
    if (!desk.code || desk.prefilled === desk.code) return;
    const type = $("order-type").value;
    if (type !== "limit" && type !== "stop_limit") return;
    const source = desk.live && desk.live.last != null ? desk.live.last : desk.reference && desk.reference.last_close;
    const fen = toFen(source);
    if (fen === null || fen <= 0) return;
    desk.prefilled = desk.code;
    if ($("order-price").value.trim() === "") $("order-price").value = plainFen(fen);
  }

  // The price up or down one tick (0.01): the field's own price, else the quote's.
  function stepPrice(ticks) {
    const input = $("order-price");
    if (input.disabled) return;
    let fen = toFen(input.value.trim());
    if (fen === null) fen = toFen(desk.live ? desk.live.last : desk.reference && desk.reference.last_close);
    if (fen === null) return;
    fen = Math.max(1, fen + ticks);
    input.value = plainFen(fen);
    hideConfirm();
    validateTicket(false);
  }

  // The socket follows the ticket's code and the held ones (their quotes revalue the positions).
  function wantedCodes() {
    const held = [...desk.positions.values()].filter((p) => Number(p.qty) > 0).map((p) => p.ts_code).slice(0, HELD_CODES);
    return new Set([...(desk.code ? [desk.code] : []), ...held]);
  }

  // Through the shared registry (app.js's watch): a code another page still wants stays subscribed.
  function syncSubscriptions() {
    const wanted = wantedCodes();
    window.LH.watch("desk", wanted);
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
    // on the exchange's clock (Asia/Shanghai), whatever the browser's zone: 09:30:12 is the open
    const time = new Date(q.time).toLocaleTimeString("zh-CN", { hour12: false, timeZone: "Asia/Shanghai" });
    $("order-live-quote").textContent = t("desk.live", { last: q.last, pre: q.pre_close, bid, ask, vol: groupDigits(String(q.volume)), time });
    prefillPrice();
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
      title: t("desk.ladder_pick"),
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
    for (let i = 5; i >= 1; i -= 1) rows.push(ladderRow(`ladder-ask-${i}`, t("desk.ask", { n: i }), asks[i - 1], q.pre_close));
    rows.push(el(
      "tr",
      { id: "ladder-last", class: "table-light" },
      el("th", { scope: "row", class: "small fw-normal", text: t("desk.last") }),
      el("td", { class: "text-end" }, ladderPrice(q.last, q.pre_close)),
      el("td", { class: "text-end mono small", text: t("desk.pre", { price: fmt(q.pre_close) }) }),
    ));
    for (let i = 1; i <= 5; i += 1) rows.push(ladderRow(`ladder-bid-${i}`, t("desk.bid", { n: i }), bids[i - 1], q.pre_close));
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
    $("order-price-label").textContent = t(protection ? "desk.protection" : "desk.price");
    $("order-price-up").disabled = $("order-price").disabled;
    $("order-price-down").disabled = $("order-price").disabled;
    show($("order-market-type-box"), type === "market" || type === "stop");
    show($("order-stop-box"), type === "stop" || type === "stop_limit");
    if (type !== "stop" && type !== "stop_limit") $("order-stop-price").value = "";
    validateTicket(false);
  }

  function readQty() {
    const text = $("order-qty").value.trim();
    if (!/^[0-9]+$/.test(text)) {
      return { error: t(text === "" ? "err.qty_empty" : "err.qty_digits"), empty: text === "" };
    }
    const qty = Number(text);
    if (!Number.isSafeInteger(qty) || qty <= 0) return { error: t("err.qty_positive") };
    return { qty };
  }

  // The lot rules of shared/core/market/rules.py (buy_qty_error, sell_qty_error), with their messages, on the lot the
  // data service serves: risk checks the same and has the last word.
  function lotError(s, side, qty) {
    if (!s) return null;
    const { min, step } = lotOf(s);
    const board = word("board", s.board);
    const onLot = qty >= min && (qty - min) % step === 0;
    if (side === "buy") {
      if (onLot) return null;
      return step === min ? t("err.lot_buy", { min }) : t("err.lot_board", { board, min });
    }
    const held = desk.positions.get(s.ts_code);
    const sellable = held ? Number(held.sellable_qty) : null;
    if (sellable !== null && qty > sellable) return t("err.lot_over", { sellable });
    if (sellable !== null && qty === sellable) return null;
    if (onLot) return null;
    return step === min ? t("err.lot_odd") : t("err.lot_board_sell", { board, min });
  }

  // A price as typed: its fen, or why it is refused (risk's price_tick / price_limit messages).
  function priceCheck(text, { withinLimits = true } = {}) {
    if (!/^\d+(\.\d+)?$/.test(text)) return { error: t("err.price_format") };
    const fen = toFen(text);
    if (fen === null) return { error: t("err.price_tick", { price: text }) };
    if (fen <= 0) return { error: t("err.price_zero") };
    if (withinLimits) {
      const { up, down } = limits();
      if (up !== null && fen > toFen(up)) return { error: t("err.price_above", { price: text, limit: up }) };
      if (down !== null && fen < toFen(down)) return { error: t("err.price_below", { price: text, limit: down }) };
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
        if (strict) errors.price = t("err.price_needed", { type: word("type", type) });
      } else {
        const checked = priceCheck(priceText, { withinLimits: type !== "market" });
        if (checked.error) errors.price = checked.error;
        else price = priceText;
      }
    }
    if (type === "market" && s && s.board === "star" && priceText === "" && strict) {
      errors.price = t("err.protection");
    }
    const stopText = $("order-stop-price").value.trim();
    let stop = null;
    if (type === "stop" || type === "stop_limit") {
      if (stopText === "") {
        if (strict) errors.stop = t("err.stop_needed");
      } else {
        const checked = priceCheck(stopText);
        const last = desk.live ? toFen(desk.live.last) : null;
        if (checked.error) errors.stop = checked.error;
        else if (last !== null && side === "sell" && checked.fen >= last) {
          errors.stop = t("err.stop_sell", { last: desk.live.last });
        } else if (last !== null && side === "buy" && checked.fen <= last) {
          errors.stop = t("err.stop_buy", { last: desk.live.last });
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
    $("order-amount").textContent = amountFen !== null ? t("desk.amount", { amount: fenText(amountFen) }) : "";
    askEstimate(estimateParams(s, side, type, price, errors.qty || qty.error ? null : qty.qty));
    $("order-qty-hint").textContent = [lotHint(s, side), qtyInLots()].filter(Boolean).join(" ");
    if (blocked) return null;
    const order = { ts_code: $("order-ts-code").value.trim().toUpperCase(), side, qty: qty.qty };
    return { type, order, price, stop, marketType: $("order-market-type").value, amountFen };
  }

  // --- the ticket's estimate (GET /v1/orders/estimate) ------------------------------------------------------

  // What to ask for: the fees need a price and a quantity; the most shares a buy may take needs a price (a market or
  // stop buy without one is reckoned by execution at the limit-up, the price its cash is reserved at); a sell's
  // sellable shares need neither. null: nothing to ask (no security, or a limit buy without a valid price).
  function estimateParams(s, side, type, price, qty) {
    if (!s) return null;
    if (side === "buy" && price === null && type !== "market" && type !== "stop") return null;
    const params = { ts_code: s.ts_code, side };
    if (price !== null) params.price = price;
    if (qty !== null && qty !== undefined) params.qty = String(qty);
    return params;
  }

  // Ask for the ticket's figures once it has been still for ESTIMATE_WAIT_MS; the same question (with the same cash
  // and the same position) is not asked again. Until the answer the figures show as "—", and an answer to an earlier
  // question is dropped (its sequence number is not the last one).
  function askEstimate(params) {
    if (!params) {
      clearTimeout(desk.estimateTimer);
      desk.estimateSeq += 1;
      desk.estimate = null;
      renderEstimate();
      return;
    }
    const paramsKey = JSON.stringify(params);
    const held = desk.positions.get(params.ts_code);
    const key = JSON.stringify([paramsKey, desk.cash ? desk.cash.available : null, held ? held.sellable_qty : null]);
    if (desk.estimate && desk.estimate.key === key) {
      renderEstimate();
      return;
    }
    desk.estimateSeq += 1;
    desk.estimate = { key, paramsKey, params, seq: desk.estimateSeq, data: null, error: null, done: false, asked: null };
    renderEstimate();
    clearTimeout(desk.estimateTimer);
    const entry = desk.estimate;
    desk.estimateTimer = setTimeout(() => fetchEstimate(entry), ESTIMATE_WAIT_MS);
  }

  function fetchEstimate(entry) {
    if (!entry.asked) {
      entry.asked = (async () => {
        const result = await api(`/api/v1/orders/estimate?${new URLSearchParams(entry.params)}`);
        if (entry.seq !== desk.estimateSeq) return; // the ticket changed meanwhile: a later answer counts
        if (result.ok && result.data) entry.data = result.data;
        else entry.error = result; // its text is written at drawing time, in the language of the moment
        entry.done = true;
        renderEstimate();
      })();
    }
    return entry.asked;
  }

  function renderEstimate() {
    const e = desk.estimate;
    const fees = $("order-fees");
    const most = $("order-max");
    most.classList.toggle("text-danger", Boolean(e && e.error));
    if (!e) {
      fees.textContent = "";
      most.textContent = "";
    } else {
      const priced = e.params.price !== undefined && e.params.qty !== undefined;
      const data = e.data;
      fees.textContent = !priced
        ? ""
        : data && data.fees
          ? t("desk.fees", {
            fees: groupDigits(data.fees.total), commission: groupDigits(data.fees.commission),
            transfer: groupDigits(data.fees.transfer_fee),
            stamp: data.fees.stamp_duty !== "0.00" ? t("desk.fees_stamp", { stamp: groupDigits(data.fees.stamp_duty) }) : "",
          })
          : t("desk.fees_unknown");
      if (e.error) most.textContent = t("desk.estimate_failed", { error: errorText(e.error) });
      else if (e.params.side === "sell") most.textContent = t("desk.max_sell", { qty: data ? groupDigits(String(data.max_qty)) : "—" });
      else {
        most.textContent = t("desk.max_buy", {
          qty: data ? groupDigits(String(data.max_qty)) : "—", cash: data ? groupDigits(data.available) : "—",
        });
      }
    }
    if (desk.pending) renderConfirm();
  }

  // Place order: checked, then shown for confirmation (what, how many, at what, the amount and the fees); only the
  // confirm button sends it. Any change to the ticket takes the confirmation away.
  function placeTicket(event) {
    event.preventDefault();
    const out = $("order-result");
    const checked = validateTicket(true);
    desk.attempted = !checked;
    if (!checked) {
      hideConfirm();
      out.replaceChildren();
      const first = document.querySelector("#order-form .is-invalid");
      if (first) first.focus();
      return;
    }
    desk.pending = checked;
    if (desk.estimate && !desk.estimate.done) {
      // the confirmation waits for no timer: the figures are asked for now (and drawn when they come)
      clearTimeout(desk.estimateTimer);
      fetchEstimate(desk.estimate);
    }
    renderConfirm();
    show($("order-confirm-box"), true);
    $("order-confirm").focus();
  }

  function renderConfirm() {
    const c = desk.pending;
    if (!c) return;
    const s = state.securities.get(c.order.ts_code);
    const priceText = c.type === "stop"
      ? `${t("open.stop", { price: c.stop })} → ${word("type", "market")}`
      : c.type === "stop_limit" ? `${t("open.stop", { price: c.stop })} → ${c.price}` : c.price ?? word("type", "market");
    const lines = [t("desk.confirm_text", {
      side: word("side", c.order.side), code: c.order.ts_code, name: s ? s.name : "",
      type: c.type === "market" ? `${word("type", "market")} · ${word("mtype", c.marketType)}` : word("type", c.type),
      qty: groupDigits(String(c.order.qty)), price: priceText,
    })];
    // The amount and the fees as execution reckons them for this ticket (none for an order without a price).
    const e = desk.estimate;
    if (c.price !== null && e && e.params.qty === String(c.order.qty) && e.params.price === c.price) {
      if (e.data && e.data.fees) {
        lines.push(t("desk.confirm_amount", { amount: groupDigits(e.data.amount), fees: groupDigits(e.data.fees.total) }));
      } else if (e.error) lines.push(t("desk.estimate_failed", { error: errorText(e.error) }));
      else lines.push(t("desk.estimating"));
    }
    $("order-confirm-text").replaceChildren(...lines.map((line) => el("div", { text: line })));
    $("order-confirm-text").className = `small mb-2 side-${c.order.side}`;
  }

  function hideConfirm() {
    desk.pending = null;
    show($("order-confirm-box"), false);
  }

  async function sendTicket() {
    const checked = desk.pending;
    hideConfirm();
    if (!checked) return;
    const out = $("order-result");
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
    out.replaceChildren(el("div", { class: "text-body-secondary small", text: t("desk.sending") }));
    try {
      const result = await api(path, { method: "POST", json: body });
      desk.lastResult = { result, conditional: type === "stop" || type === "stop_limit" };
      renderTicketResult();
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

  function renderTicketResult() {
    const last = desk.lastResult;
    if (!last) return;
    $("order-result").replaceChildren(last.conditional ? conditionalResult(last.result) : window.LH.renderOrderResult(last.result));
  }

  function conditionalResult(result) {
    if (!result.ok) return window.LH.renderOrderResult(result);
    const c = result.data || {};
    return el(
      "div",
      { class: "alert alert-success mb-0", role: "status" },
      el("strong", { text: `${t("desk.stop_armed")} ` }),
      `${fmt(c.conditional_id)} · ${word("type", c.kind)} · ${word("cond", c.status)}`,
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

  // The open orders' message, kept as its parts so a language switch says it again.
  function openNote(parts, kind) {
    desk.openNote = parts ? [parts, kind] : null;
    openResult(parts ? parts.map(([key, vars]) => t(key, vars)).join("") : "", kind);
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
            class: "btn btn-outline-primary btn-sm me-1", type: "button", text: t("open.amend"), "data-action": "amend",
            onclick: () => openAmend(o),
          }));
        }
        actions.append(el("button", {
          class: "btn btn-outline-danger btn-sm", type: "button", text: t("open.cancel"), "data-action": "cancel",
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
        el("td", { class: `side-${o.side}`, text: word("side", o.side) }),
        el("td", { text: o.market_type && o.order_type === "market" ? `${word("type", "market")} · ${word("mtype", o.market_type)}` : word("type", o.order_type) }),
        el("td", { class: "text-end", text: groupDigits(o.qty) }),
        el("td", { class: "text-end mono", text: fmt(o.price) }),
        el("td", {}, el("span", { class: "badge text-bg-primary", "data-status": o.status, text: window.LHI18n.orderStatus(o) })),
        el("td", { class: "text-end", text: groupDigits(o.filled_qty) }),
        actions,
      ));
      if (desk.amending && desk.amending.orderId === o.order_id) rows.push(amendRow(o));
    }
    for (const c of desk.conditionals) {
      const actions = el("td", { class: "text-end" });
      if (allowed) {
        actions.append(el("button", {
          class: "btn btn-outline-danger btn-sm", type: "button", text: t("open.cancel"), "data-action": "cancel",
          onclick: (event) => {
            event.currentTarget.disabled = true;
            cancelConditional(c.conditional_id);
          },
        }));
      }
      const trigger = c.stop_price != null ? t("open.stop", { price: c.stop_price }) : c.level != null ? t("open.at", { level: c.level }) : fmt(c.at);
      rows.push(el(
        "tr",
        { id: `open-cond-${c.conditional_id}` },
        el("td", { class: "mono small", text: c.conditional_id }),
        el("td", { class: "mono", text: fmt(c.ts_code) }),
        el("td", { class: `side-${c.side}`, text: word("side", c.side) }),
        el("td", { text: word("type", c.kind) }),
        el("td", { class: "text-end", text: groupDigits(c.qty) }),
        el("td", { class: "text-end mono", text: `${trigger}${c.price != null ? ` → ${c.price}` : ""}` }),
        el("td", {}, el("span", { class: "badge text-bg-warning", "data-status": c.status, text: word("cond", c.status) })),
        el("td", { class: "text-end", text: "—" }),
        actions,
      ));
    }
    if (desk.amending && !desk.openOrders.some((o) => o.order_id === desk.amending.orderId)) desk.amending = null;
    if (!rows.length) rows.push(el("tr", {}, el("td", { colspan: "9", class: "text-body-secondary small", text: t("open.none") })));
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
    const price = el("input", { class: "form-control form-control-sm amend-price", inputmode: "decimal", "aria-label": t("open.new_price"), value: draft.price });
    const qty = el("input", { class: "form-control form-control-sm amend-qty", inputmode: "numeric", "aria-label": t("open.new_qty"), value: draft.qty });
    price.addEventListener("input", () => { draft.price = price.value; });
    qty.addEventListener("input", () => { draft.qty = qty.value; });
    const send = el("button", { class: "btn btn-primary btn-sm", type: "button", text: t("open.send_amend"), onclick: () => sendAmend(o) });
    return el(
      "tr",
      { id: `amend-${o.order_id}`, class: "table-light" },
      el("td", { colspan: "9" }, el(
        "div",
        { class: "d-flex flex-wrap gap-2 align-items-center" },
        el("span", { class: "small", text: t("open.new_price") }), price,
        el("span", { class: "small", text: t("open.new_qty") }), qty,
        send,
        el("button", { class: "btn btn-outline-secondary btn-sm", type: "button", text: t("open.close"), onclick: () => openAmend(o) }),
        el("span", { class: "small text-danger amend-error", text: draft.error || "" }),
        el("span", { class: "small text-body-secondary w-100", text: t("open.amend_note", { filled: groupDigits(o.filled_qty) }) }),
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
        draft.error = t("open.amend_tick", { price: priceText });
        renderOpenOrders();
        return;
      }
      body.price = priceText;
    }
    if (qtyText !== "" && qtyText !== String(o.qty)) {
      if (!/^[0-9]+$/.test(qtyText) || Number(qtyText) <= Number(o.filled_qty || 0)) {
        draft.error = t("open.amend_qty", { filled: o.filled_qty || 0 });
        renderOpenOrders();
        return;
      }
      body.qty = Number(qtyText);
    }
    if (!Object.keys(body).length) {
      draft.error = t("open.amend_nothing");
      renderOpenOrders();
      return;
    }
    const result = await api(`/api/v1/orders/${encodeURIComponent(o.order_id)}/amend`, { method: "POST", json: body });
    if (result.ok) {
      desk.amending = null;
      // 202 with the amend (docs/order-path.md, amending): `replaced` at once on the paper broker; on QMT it follows
      // the broker's cancel report (the order's row changes as the events arrive).
      const a = result.data || {};
      const reasons = Array.isArray(a.reasons) && a.reasons.length
        ? ` · ${a.reasons.map((r) => window.LHI18n.errorMessage(r.code, r.message)).join("; ")}` : "";
      const refused = a.status === "replacement_refused";
      openNote([
        ["open.amend_result", { id: fmt(a.amend_id), order: o.order_id, status: word("amend", a.status) }],
        ...(a.replacement_order_id ? [["open.amend_replacement", { id: a.replacement_order_id, qty: groupDigits(a.replacement_qty), price: fmt(a.new_price) }]] : []),
        ...(refused ? [["open.amend_refused", {}]] : []),
        ...(reasons ? [["{text}", { text: reasons }]] : []),
      ], refused ? "error" : "ok");
    } else {
      draft.error = errorText(result);
      openNote([["open.amend_failed", { order: o.order_id, reason: errorText(result) }]], "error");
    }
    window.LH.refreshOrders();
    window.LH.refreshAccount();
  }

  async function cancelConditional(conditionalId) {
    const result = await api(`/api/v1/conditional-orders/${encodeURIComponent(conditionalId)}/cancel`, { method: "POST" });
    openNote([result.ok ? ["open.cond_cancelled", { id: conditionalId }] : ["open.cond_cancel_failed", { id: conditionalId, reason: errorText(result) }]], result.ok ? "ok" : "error");
    refreshConditionals();
  }

  // Two clicks: the first arms the button (for a few seconds), the second sends. No confirm() dialog.
  async function cancelAll() {
    const button = $("cancel-all");
    if (!desk.cancelAllTimer) {
      const count = desk.openOrders.length + desk.conditionals.length;
      button.textContent = t("open.cancel_all_confirm", { count });
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
      openNote([
        ["open.cancel_all_result", { requested: fmt(r.requested), cancelled: (r.cancelled || []).length, requesting: (r.cancel_requested || []).length }],
        ...((r.conditional_cancelled || []).length ? [["open.cancel_all_cond", { count: r.conditional_cancelled.length }]] : []),
        ...(failed.length ? [["open.cancel_all_failed", { list: failed.map((f) => `${f.order_id} ${f.code}`).join(", ") }]] : []),
      ], failed.length ? "error" : "ok");
    } else {
      openNote([["open.cancel_all_error", { reason: errorText(result) }]], "error");
    }
    window.LH.refreshOrders();
    window.LH.refreshAccount();
    refreshConditionals();
  }

  function disarmCancelAll() {
    clearTimeout(desk.cancelAllTimer);
    desk.cancelAllTimer = null;
    const button = $("cancel-all");
    button.textContent = t("open.cancel_all");
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
    desk.accountUpdated = new Date().toLocaleTimeString("zh-CN", { hour12: false });
    $("account-updated").textContent = t("common.updated", { time: desk.accountUpdated });
    validateTicket(false); // a sell's check reads the sellable quantity, a buy's maximum the available cash
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
      desk.cash = data;
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
      note.textContent = unpriced.length ? t("account.unpriced", { codes: unpriced.join(", ") }) : "";
      show(note, unpriced.length > 0);
    } else if (isQuietRefusal(result)) {
      $("account-id").textContent = "";
      show($("account-cash"), false);
      desk.cash = null;
      note.textContent = t("account.no_cash", { reason: errorText(result) });
      show(note, true);
    } else {
      errors.push(t("account.cash_failed", { reason: errorText(result) })); // the last figures stay, marked stale by the error
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
        $("positions").append(el("tr", {}, el("td", { colspan: "12", class: "text-body-secondary small", text: t("account.no_positions") })));
      }
      show(note, false);
    } else if (isQuietRefusal(result)) {
      $("positions").replaceChildren();
      note.textContent = t("account.positions_unavailable", { reason: errorText(result) });
      show(note, true);
    } else {
      errors.push(t("account.positions_failed", { reason: errorText(result) }));
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
      cell("avg-cost", groupDigits(p.avg_cost)),
      cell("cost", groupDigits(p.cost_basis)),
      el("td", { class: "text-end mono pos-last", text: groupDigits(p.last_price), title: p.price_source ? `${p.price_source} · ${fmt(p.price_as_of)}` : undefined }),
      cell("value", groupDigits(p.market_value)),
      cell("unrealised", groupDigits(p.unrealised_pnl), signClass(p.unrealised_pnl)),
      cell("realised", groupDigits(p.realised_pnl), signClass(p.realised_pnl)),
      cell("pnl-today", groupDigits(p.pnl_today), signClass(p.pnl_today)),
    );
  }

  // --- transaction cost analysis (docs/tca.md) --------------------------------------------------------------------

  // Column titles are i18n keys; a row is `r` (a TCA order) or `g` (a group).
  const TCA_ORDER_COLUMNS = [
    ["tca.order", (r) => r.order_id, "mono small"],
    ["tca.day", (r) => r.day, "small"],
    ["tca.security", (r) => r.ts_code, "mono"],
    ["tca.side", (r) => word("side", r.side), (r) => `side-${r.side}`],
    ["tca.filled", (r) => groupDigits(r.filled_qty), "text-end"],
    ["tca.vwap", (r) => fmt(r.fill_vwap), "text-end mono tca-vwap"],
    ["tca.arrival", (r) => (r.arrival_price == null ? "—" : `${r.arrival_price} (${r.arrival_source})`), "text-end mono tca-arrival"],
    ["tca.vs_arrival", (r) => fmt(r.slippage_vs_arrival), "text-end mono"],
    ["tca.vs_arrival_bps", (r) => fmt(r.slippage_vs_arrival_bps), "text-end mono"],
    ["tca.interval_vwap", (r) => fmt(r.interval_vwap), "text-end mono"],
    ["tca.vs_interval_bps", (r) => fmt(r.slippage_vs_interval_bps), "text-end mono"],
    ["tca.fees", (r) => fmt(r.fees), "text-end mono tca-fees"],
    ["tca.fees_bps", (r) => fmt(r.fees_bps), "text-end mono"],
  ];
  const TCA_GROUP_COLUMNS = [
    ["tca.key", (g) => (g.key == null ? t("tca.own") : g.total ? t("tca.total") : g.key), "mono small"],
    ["tca.orders", (g) => `${g.filled_orders} / ${g.orders}`, "text-end"],
    ["tca.filled_amount", (g) => groupDigits(g.filled_amount), "text-end mono"],
    ["tca.fees", (g) => fmt(g.fees), "text-end mono"],
    ["tca.fees_bps", (g) => fmt(g.fees_bps), "text-end mono"],
    ["tca.vs_arrival", (g) => fmt(g.slippage_vs_arrival), "text-end mono"],
    ["tca.vs_arrival_bps", (g) => fmt(g.slippage_vs_arrival_bps), "text-end mono"],
    ["tca.vs_interval", (g) => fmt(g.slippage_vs_interval), "text-end mono"],
    ["tca.vs_interval_bps", (g) => fmt(g.slippage_vs_interval_bps), "text-end mono"],
  ];

  function tcaTable(columns, rows, idOf) {
    $("tca-head").replaceChildren(el("tr", {}, ...columns.map(([title, , cls]) =>
      el("th", { class: typeof cls === "string" && cls.includes("text-end") ? "text-end" : undefined, text: t(title) }))));
    $("tca").replaceChildren(...rows.map((row) => el(
      "tr",
      { id: idOf(row) },
      ...columns.map(([, value, cls]) => el("td", { class: typeof cls === "function" ? cls(row) : cls, text: value(row) ?? "—" })),
    )));
    if (!rows.length) $("tca").append(el("tr", {}, el("td", { colspan: String(columns.length), class: "text-body-secondary small", text: t("tca.none") })));
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
      $("tca-error").textContent = t("tca.failed", { reason: errorText(result) });
      show($("tca-error"), true);
      return;
    }
    show($("tca-error"), false);
    if (by === "orders") {
      const rows = (Array.isArray(result.data) ? result.data : []).slice(-TCA_ROWS).reverse(); // newest first
      tcaTable(TCA_ORDER_COLUMNS, rows, (t) => `tca-${t.order_id}`);
    } else {
      const data = result.data || {};
      const groups = [...(data.groups || []), ...(data.total ? [{ ...data.total, key: "total", total: true }] : [])];
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
    broker_unavailable: (b) => t("broker.unavailable", { id: fmt(b.bridge_id) }),
    trading_disabled: (b) => t("broker.disabled", { id: fmt(b.bridge_id) }),
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
      $("ticket-broker").textContent = b.broker === "qmt" ? t("broker.qmt", { id: fmt(b.bridge_id) }) : t("broker.paper");
      const message = b.orders_refused ? (REFUSALS[b.orders_refused] || (() => t("broker.refused", { reason: b.orders_refused })))(b) : "";
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
        ...down.map((b) => t("bridge.disconnected", { id: b.bridge_id })),
        ...off.map((b) => t("bridge.off", { id: b.bridge_id })),
      ];
      badge.textContent = parts.length ? t("bridge.parts", { parts: parts.join(" · ") }) : t("bridge.all", { count: bridges.data.length });
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

  // --- trades (fills) of the account ---------------------------------------------------------------------------

  async function refreshTrades() {
    if (!state.session) return;
    const seq = ++desk.tradesSeq;
    const result = await api("/api/v1/trades?limit=200");
    if (!state.session || seq !== desk.tradesSeq) return;
    if (!result.ok || !Array.isArray(result.data)) {
      $("trades-error").textContent = t("trades.failed", { reason: errorText(result) });
      show($("trades-error"), true);
      return;
    }
    show($("trades-error"), false);
    desk.trades = result.data;
    desk.tradesUpdated = new Date().toLocaleTimeString("zh-CN", { hour12: false });
    renderTrades();
  }

  function renderTrades() {
    const rows = [...desk.trades].sort((a, b) => String(b.traded_at || "").localeCompare(String(a.traded_at || "")));
    $("trades").replaceChildren(...rows.map((tr) => el(
      "tr",
      { id: `trade-${tr.trade_id}`, "data-trade": tr.trade_id },
      el("td", { class: "small text-nowrap", text: window.LH.fmtMarketTime(tr.traded_at) }),
      el("td", { class: "mono", text: fmt(tr.ts_code) }),
      el("td", { class: `side-${tr.side}`, text: word("side", tr.side) }),
      el("td", { class: "text-end", text: groupDigits(tr.qty) }),
      el("td", { class: "text-end mono", text: fmt(tr.price) }),
      el("td", { class: "text-end mono trade-amount", text: groupDigits(tr.amount) }),
      el("td", { class: "text-end mono trade-fees", text: groupDigits(tr.fees) }),
      el("td", { class: "mono small", text: fmt(tr.order_id) }),
    )));
    if (!rows.length) $("trades").append(el("tr", {}, el("td", { colspan: "8", class: "text-body-secondary small", text: t("trades.none") })));
    if (desk.tradesUpdated) $("trades-updated").textContent = t("common.updated", { time: desk.tradesUpdated });
  }

  let tradesSoon = null;
  function scheduleTradesRefresh() {
    clearTimeout(tradesSoon);
    tradesSoon = setTimeout(refreshTrades, 300);
  }

  // The language switched: the desk's dynamic text is written again (figures are not re-read).
  function relabel() {
    describeSecurity();
    onTypeChange();
    renderLadder();
    if (desk.live) onQuote(desk.live);
    if (!state.session) return;
    renderConfirm();
    renderTicketResult();
    renderOpenOrders();
    if (desk.openNote) openNote(desk.openNote[0], desk.openNote[1]);
    if (!desk.cancelAllTimer) disarmCancelAll();
    renderTrades();
    refreshTca();
    refreshBroker();
    window.LH.refreshAccount();
  }

  function start() {
    disarmCancelAll();
    refreshConditionals();
    refreshTrades();
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
    desk.tradesSeq += 1;
    desk.trades = [];
    desk.tradesUpdated = null;
    desk.cash = null;
    desk.prefilled = null;
    desk.lastResult = null;
    desk.openNote = null;
    clearTimeout(desk.estimateTimer);
    desk.estimateSeq += 1; // an answer on its way belongs to the session that ended
    desk.estimate = null;
    hideConfirm();
    $("trades").replaceChildren();
    $("trades-updated").textContent = "";
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
    if (type.startsWith("trade.")) scheduleTradesRefresh();
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("order-form").addEventListener("submit", placeTicket);
    $("order-confirm").addEventListener("click", sendTicket);
    $("order-confirm-cancel").addEventListener("click", hideConfirm);
    $("order-type").addEventListener("change", () => {
      hideConfirm();
      onTypeChange();
      prefillPrice();
      validateTicket(false);
    });
    $("order-ts-code").addEventListener("input", () => {
      hideConfirm();
      describeSecurity();
      onTypeChange();
    });
    $("order-side").addEventListener("change", () => {
      hideConfirm();
      describeSecurity();
    });
    for (const id of ["order-qty", "order-price", "order-stop-price", "order-market-type"]) {
      $(id).addEventListener("input", () => {
        hideConfirm();
        validateTicket(false);
      });
    }
    $("order-price-up").addEventListener("click", () => stepPrice(1));
    $("order-price-down").addEventListener("click", () => stepPrice(-1));
    // Arrow keys step the price by the tick, as on a broker's ticket.
    $("order-price").addEventListener("keydown", (event) => {
      if (event.key === "ArrowUp" || event.key === "ArrowDown") {
        event.preventDefault();
        stepPrice(event.key === "ArrowUp" ? 1 : -1);
      }
    });
    $("trades-refresh").addEventListener("click", refreshTrades);
    window.addEventListener("lh:lang", relabel);
    $("cancel-all").addEventListener("click", cancelAll);
    $("tca-by").addEventListener("change", refreshTca);
    $("tca-refresh").addEventListener("click", refreshTca);
  });

  return { start, stop, onSocketOpen, onQuote, onOrders, renderAccount, clearAccount, describeSecurity, onEvent, refreshTca };
})();
