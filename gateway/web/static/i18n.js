// LiangHua web UI: the language switch (Chinese first, English on request) and the shared words.
// Loaded before every other script. A page adds its own words with LHI18n.add({zh: {...}, en: {...}}) and marks
// static text with data-i18n="key" (textContent), data-i18n-placeholder, data-i18n-title or data-i18n-aria-label;
// apply() fills them. Dynamic text is built with LHI18n.t(key, {name: value}) and rebuilt on the "lh:lang" event,
// which setLang() dispatches on window after the static text is redone.
"use strict";

window.LHI18n = (() => {
  const STORAGE_KEY = "lianghua.lang";
  const LANGS = ["zh", "en"];
  const HTML_LANG = { zh: "zh-CN", en: "en" };
  const dicts = { zh: {}, en: {} };
  const ATTRS = [
    ["i18n", null],
    ["i18nPlaceholder", "placeholder"],
    ["i18nTitle", "title"],
    ["i18nAriaLabel", "aria-label"],
  ];

  let lang = "zh";
  try {
    const stored = localStorage.getItem(STORAGE_KEY);
    if (LANGS.includes(stored)) lang = stored;
  } catch (_) {
    // storage refused (private mode): Chinese, for this page's life
  }

  function add(words) {
    for (const code of LANGS) Object.assign(dicts[code], (words && words[code]) || {});
  }

  // The word for key in the current language, else in Chinese, else the key itself (a missing word shows, it is
  // never blank). {name} placeholders are replaced from vars.
  function t(key, vars) {
    let text = dicts[lang][key];
    if (text === undefined) text = dicts.zh[key];
    if (text === undefined) text = key;
    if (vars) text = text.replace(/\{(\w+)\}/g, (whole, name) => (name in vars ? String(vars[name]) : whole));
    return text;
  }

  function has(key) {
    return key in dicts[lang] || key in dicts.zh;
  }

  // The word for a value of a kind ("status", "side", "instance" ...), else the value itself (a status the table does
  // not know yet shows as the server gives it, never blank).
  function word(kind, value) {
    if (value === undefined || value === null || value === "") return "—";
    const key = `${kind}.${value}`;
    return has(key) ? t(key) : String(value);
  }

  // An order's status as the screens say it: cancelled after a partial fill is 部撤, not 已撤.
  function orderStatusKey(order) {
    const status = order && order.status;
    if (status === "cancelled" && /^[1-9]\d*$/.test(String(order.filled_qty ?? ""))) return "partly_cancelled";
    return status;
  }

  function orderStatus(order) {
    return word("status", orderStatusKey(order));
  }

  // A refusal {code, message} in the current language: the code's own words when this language has them (the code
  // kept beside them, as the docs name it), else the server's message as given.
  function errorMessage(code, message) {
    const key = `error.${code}`;
    if (code && key in dicts[lang]) {
      const own = lang === "zh" ? `${t(key)}（${code}）` : `${t(key)} (${code})`;
      // the server's message keeps its figures (needed, available, the limit price): shown after the words
      return message && message !== t(key) ? `${own}${lang === "zh" ? "：" : ": "}${message}` : own;
    }
    return code ? `${code}: ${message || ""}`.trim() : String(message || "");
  }

  function apply(root = document) {
    for (const [data, attr] of ATTRS) {
      const selector = `[data-${data.replace(/[A-Z]/g, (c) => "-" + c.toLowerCase())}]`;
      const nodes = [...root.querySelectorAll(selector)];
      if (root.matches && root.matches(selector)) nodes.push(root);
      for (const node of nodes) {
        const text = t(node.dataset[data]);
        if (attr) node.setAttribute(attr, text);
        else node.textContent = text;
      }
    }
  }

  function setLang(next) {
    if (!LANGS.includes(next) || next === lang) return;
    lang = next;
    try {
      localStorage.setItem(STORAGE_KEY, next);
    } catch (_) {
      // not kept across reloads; the switch still works on this page
    }
    document.documentElement.lang = HTML_LANG[next];
    apply();
    window.dispatchEvent(new CustomEvent("lh:lang", { detail: { lang: next } }));
  }

  add({
    zh: {
      "lang.switch": "English",
      "nav.desk": "交易",
      "nav.market": "行情",
      "nav.strategies": "策略",
      "nav.backtests": "回测",
      "nav.risk": "风控",
      "nav.data": "数据",
      "nav.alerts": "告警",
      "nav.admin": "管理",
      "common.loading": "加载中…",
      "common.refresh": "刷新",
      "common.failed": "刷新失败：{reason}",
      "common.none": "无",
      "common.updated": "更新于 {time}",
      "common.cny": "元",
      // Order statuses as A-share screens say them (QMT's 待报/已报/部成/已成/已撤/部撤/废单, docs/order-path.md).
      // "partly_cancelled" is the platform's cancelled with some filled; "risk_refused" a risk decision that never
      // became an order (GET /decisions, approved false).
      "status.accepted": "待报",
      "status.submitted": "已报",
      "status.partially_filled": "部成",
      "status.filled": "已成",
      "status.cancelled": "已撤",
      "status.partly_cancelled": "部撤",
      "status.rejected": "废单",
      "status.unknown": "状态未明",
      "status.risk_refused": "风控拒绝",
      // Conditional (stop) orders, docs/conditional-orders.md
      "cond.waiting": "等待母单",
      "cond.armed": "监控中",
      "cond.triggered": "已触发",
      "cond.placed": "已下单",
      "cond.refused": "被拒绝",
      "cond.expired": "已过期",
      "cond.cancelled": "已撤",
      // Amends (cancel-replace), docs/order-path.md
      "amend.cancelling": "撤单中",
      "amend.replacing": "替换中",
      "amend.replaced": "已改单",
      "amend.replacement_refused": "新单被拒",
      "amend.not_needed": "无需改单",
      "amend.expired": "已过期",
      "amend.cancelled_by_user": "已撤销",
      "side.buy": "买入",
      "side.sell": "卖出",
      "type.limit": "限价",
      "type.market": "市价",
      "type.stop": "止损市价",
      "type.stop_limit": "止损限价",
      // Strategy instances (services/strategy/lifecycle.py)
      "instance.created": "已创建",
      "instance.running": "运行中",
      "instance.paused": "已暂停",
      "instance.stopped": "已停止",
      "instance.failed": "失败",
      "mode.paper": "模拟",
      "mode.live": "实盘",
      "role.viewer": "观察员",
      "role.trader": "交易员",
      "role.admin": "管理员",
      // The API's refusals: {code, message}. A code listed here shows in Chinese (with the code); any other shows the
      // server's message as given.
      "error.network": "网络错误：网关没有应答",
      "error.http": "HTTP {status}",
      "error.invalid_credentials": "用户名或密码错误",
      "error.unauthorized": "未登录或登录已过期",
      "error.forbidden": "无权限",
      "error.invalid_request": "请求无效",
      "error.invalid_input": "请修改标出的字段",
      "error.lot_size": "数量不符合交易单位",
      "error.price_tick": "价格不符合最小变动价位（0.01）",
      "error.price_limit": "价格超出涨跌停",
      "error.insufficient_cash": "可用资金不足",
      "error.insufficient_position": "可卖持仓不足",
      "error.price_cap_unknown": "无涨停价，无法计算市价买入的冻结资金",
      "error.limits_unknown": "本交易日涨跌停价尚未知",
      "error.no_session": "没有可交易的交易日",
      "error.trading_halted": "交易已暂停（风控）",
      "error.trading_reducing": "仅允许减仓（风控）",
      "error.broker_unavailable": "券商通道不可用（QMT 未连接）",
      "error.trading_disabled": "交易开关已关闭",
      "error.risk_unavailable": "风控暂不可用，请重试",
      "error.order_rejected": "委托被拒绝",
      "error.order_not_found": "委托不存在",
      "error.order_not_amendable": "委托无法改单",
      "error.amend_in_progress": "改单进行中",
      "error.amend_changes_nothing": "价格和数量均未改变",
      "error.market_type_invalid": "该交易所不支持此市价类型",
      "error.protection_price_required": "科创板市价单需要保护限价",
      "error.max_order_value": "单笔金额超限",
      "error.max_order_qty": "单笔数量超限",
      "error.exchange_max_qty": "超过交易所单笔最大数量",
      "error.price_deviation": "价格偏离过大",
      "error.price_cage": "超出价格笼子",
      "error.auction_closed": "集合竞价撮合期间不接受委托",
      "error.cancel_window": "当前时段不可撤单",
      "error.session_closed": "已收盘",
      "error.suspended": "停牌",
      "error.st_stock": "ST 股票不可买入",
      "error.blacklisted": "黑名单股票",
      "error.not_whitelisted": "不在白名单内",
      "error.position_pct": "持仓占比超限",
      "error.position_value": "持仓市值超限",
      "error.industry_pct": "行业集中度超限",
      "error.exposure_pct": "总仓位超限",
      "error.liquidity_pct": "超过成交量限制",
      "error.order_rate_second": "下单过于频繁（每秒）",
      "error.order_rate_day": "超过当日下单次数",
      "error.active_orders": "未成交委托过多",
      "error.duplicate_order": "重复委托",
      "error.self_trade": "可能自成交",
      "error.daily_loss": "超过当日亏损限额",
      "error.daily_loss_pct": "超过当日亏损比例",
      "error.drawdown": "超过最大回撤",
      "error.client_order_id_conflict": "委托编号冲突",
      "error.nothing_to_sell": "没有可卖持仓",
      "error.invalid_stop_price": "触发价无效",
      "error.not_replay": "本平台使用真实时钟，回放不可用",
    },
    en: {
      "lang.switch": "中文",
      "nav.desk": "Desk",
      "nav.market": "Market",
      "nav.strategies": "Strategies",
      "nav.backtests": "Backtests",
      "nav.risk": "Risk",
      "nav.data": "Data",
      "nav.alerts": "Alerts",
      "nav.admin": "Admin",
      "common.loading": "Loading…",
      "common.refresh": "Refresh",
      "common.failed": "Refresh failed: {reason}",
      "common.none": "None",
      "common.updated": "updated {time}",
      "common.cny": "CNY",
      "status.accepted": "Pending",
      "status.submitted": "Submitted",
      "status.partially_filled": "Partly filled",
      "status.filled": "Filled",
      "status.cancelled": "Cancelled",
      "status.partly_cancelled": "Partly cancelled",
      "status.rejected": "Rejected",
      "status.unknown": "Unknown",
      "status.risk_refused": "Refused by risk",
      "cond.waiting": "waiting",
      "cond.armed": "armed",
      "cond.triggered": "triggered",
      "cond.placed": "placed",
      "cond.refused": "refused",
      "cond.expired": "expired",
      "cond.cancelled": "cancelled",
      "amend.cancelling": "cancelling",
      "amend.replacing": "replacing",
      "amend.replaced": "replaced",
      "amend.replacement_refused": "replacement refused",
      "amend.not_needed": "not needed",
      "amend.expired": "expired",
      "amend.cancelled_by_user": "cancelled by user",
      "side.buy": "buy",
      "side.sell": "sell",
      "type.limit": "limit",
      "type.market": "market",
      "type.stop": "stop",
      "type.stop_limit": "stop-limit",
      "instance.created": "created",
      "instance.running": "running",
      "instance.paused": "paused",
      "instance.stopped": "stopped",
      "instance.failed": "failed",
      "mode.paper": "paper",
      "mode.live": "live",
      "role.viewer": "viewer",
      "role.trader": "trader",
      "role.admin": "admin",
      // English shows the server's own (English) message: only the client's own errors are here.
      "error.network": "network error: the gateway did not answer",
      "error.http": "HTTP {status}",
      "error.invalid_credentials": "Wrong username or password.",
      "error.invalid_input": "fix the marked fields",
    },
  });

  document.documentElement.lang = HTML_LANG[lang];
  document.addEventListener("DOMContentLoaded", () => apply());

  return {
    add, t, has, word, orderStatus, orderStatusKey, errorMessage, apply, setLang,
    get lang() {
      return lang;
    },
    LANGS,
  };
})();
