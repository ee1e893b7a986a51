// The Backtests page (#backtests): the backtest form (with the data's range shown and enforced), the runs' history
// (searched and paged on the server, with each run's owner, status and progress), the comparison of finished runs
// (metrics side by side, equity curves overlaid), and optimisations (form, progress, ranked table, heatmap, report).
// It builds its content inside <section id="backtests-view"> and registers window.LHPages.backtests. Server data is
// put on the page with textContent only.
"use strict";

(() => {
  const ACTIVE = new Set(["queued", "running"]);
  const PAGE_SIZE = 20;
  const POLL_MS = 5000;
  const OPT_POLL_MS = 1000;
  const DEFAULT_SYMBOLS = 5;
  const CALENDAR_FROM = "1990-01-01";
  // As the backtest service (MAX_CLOSED_DAYS): no A-share closure is longer, so a start up to this many days before
  // the first stored trading day, or an end up to this many days after the last complete day with no trading day
  // between, is accepted.
  const MAX_CLOSED_DAYS = 14;
  const OPT_LIST = 10; // the recent optimisations listed under the form
  const COMPARE_METRICS = [
    ["total_return", "pct"],
    ["annual_return", "pct"],
    ["max_drawdown", "share"],
    ["sharpe", "num"],
    ["sortino", "num"],
    ["calmar", "num"],
    ["volatility", "share"],
    ["win_rate", "share"],
    ["trade_count", "int"],
    ["final_equity", "money"],
  ];

  window.LHI18n.add({
    zh: {
      "backtests.form.title": "运行回测",
      "backtests.readonly": "你的角色是观察者：可以查看回测，不能运行。",
      "backtests.strategy": "策略",
      "backtests.symbols": "股票代码（ts_code，逗号分隔）",
      "backtests.start": "开始日期",
      "backtests.end": "结束日期",
      "backtests.cash": "初始资金（元）",
      "backtests.name": "名称（可选）",
      "backtests.run": "运行回测",
      "backtests.sending": "提交中…",
      "backtests.queued": "回测已排队：",
      "backtests.range": "可用数据：{first} 至 {last}",
      "backtests.range.codes": "所选股票最晚上市：{listed}",
      "backtests.range.unknown": "数据范围未知：{error}",
      "backtests.range.before": "早于可用数据的首日 {first} 超过 14 天（最早可从 {earliest} 开始）",
      "backtests.range.after": "晚于数据完整的最后一日 {last}（最晚可到 {latest}）",
      "backtests.range.allowed": "可回测：开始不早于 {earliest}，结束不晚于 {latest}",
      "backtests.range.none": "开始与结束之间没有已存储的交易日",
      "backtests.range.order": "开始日期晚于结束日期",
      "backtests.range.listed": "{code} 于 {listed} 才上市",
      "backtests.fix": "请修正标出的字段",
      "backtests.symbolsCount": "{n} 只股票",
      "backtests.notInMarket": "不在市场中：{codes}",
      "backtests.history": "回测记录",
      "backtests.search": "搜索（策略、名称、股票）",
      "backtests.searchGo": "搜索",
      "backtests.metric.total_return": "总收益",
      "backtests.metric.annual_return": "年化收益",
      "backtests.metric.max_drawdown": "最大回撤",
      "backtests.metric.sharpe": "夏普比率",
      "backtests.metric.sortino": "索提诺比率",
      "backtests.metric.calmar": "卡玛比率",
      "backtests.metric.volatility": "波动率",
      "backtests.metric.win_rate": "胜率",
      "backtests.metric.trade_count": "交易次数",
      "backtests.metric.final_equity": "期末权益（元）",
      "backtests.owner": "所有者",
      "backtests.status.any": "全部状态",
      "backtests.refresh": "刷新",
      "backtests.prev": "上一页",
      "backtests.next": "下一页",
      "backtests.pageOf": "第 {page} 页",
      "backtests.updated": "更新于 {time}",
      "backtests.loadFailed": "回测记录加载失败：{error}",
      "backtests.none": "没有回测。",
      "backtests.col.created": "创建时间",
      "backtests.col.strategy": "策略",
      "backtests.col.owner": "所有者",
      "backtests.col.symbols": "股票数",
      "backtests.col.period": "区间",
      "backtests.col.status": "状态",
      "backtests.col.return": "总收益",
      "backtests.col.equity": "期末权益",
      "backtests.report": "报告",
      "backtests.cancel": "取消",
      "backtests.cancelling": "取消中…",
      "backtests.starting": "启动中…",
      "backtests.progress": "{percent}% · {done}/{days} 天",
      "backtests.eta": " · 约剩 {s} 秒",
      "backtests.status.queued": "排队中",
      "backtests.status.running": "运行中",
      "backtests.status.succeeded": "已完成",
      "backtests.status.failed": "失败",
      "backtests.status.cancelled": "已取消",
      "backtests.select": "选择以比较",
      "backtests.compare": "比较所选（{n}）",
      "backtests.compare.title": "回测比较",
      "backtests.compare.need": "请至少选择两个已完成的回测。",
      "backtests.compare.failed": "比较数据加载失败：{error}",
      "backtests.compare.metric": "指标",
      "backtests.compare.close": "关闭",
      "backtests.opt.title": "参数优化",
      "backtests.opt.space": "参数网格（JSON：每个参数一个取值列表或 {min, max, step}）",
      "backtests.opt.objective": "目标指标",
      "backtests.opt.direction": "方向",
      "backtests.opt.maximize": "最大化",
      "backtests.opt.minimize": "最小化",
      "backtests.opt.run": "运行优化",
      "backtests.opt.badSpace": "不是有效的 JSON 对象",
      "backtests.opt.queued": "优化已排队：",
      "backtests.opt.progress": "{done}/{total} 个点（跳过 {skipped}）",
      "backtests.opt.ranked": "排名",
      "backtests.opt.rank": "名次",
      "backtests.opt.params": "参数",
      "backtests.opt.value": "目标值",
      "backtests.opt.feasible": "可行",
      "backtests.opt.yes": "是",
      "backtests.opt.no": "否",
      "backtests.opt.heatmap": "热力图：{x} × {y}（{metric}）",
      "backtests.opt.noHeatmap": "热力图需要恰好两个搜索参数。",
      "backtests.opt.loadFailed": "优化加载失败：{error}",
      "backtests.opt.none": "还没有优化。",
      "backtests.opt.view": "查看",
      "backtests.opt.status.queued": "排队中",
      "backtests.opt.status.running": "运行中",
      "backtests.opt.status.succeeded": "已完成",
      "backtests.opt.status.failed": "失败",
      "backtests.opt.status.cancelled": "已取消",
    },
    en: {
      "backtests.form.title": "Run a backtest",
      "backtests.readonly": "Your role is viewer: you can read backtests, not run them.",
      "backtests.strategy": "Strategy",
      "backtests.symbols": "Symbols (ts_code, comma-separated)",
      "backtests.start": "Start",
      "backtests.end": "End",
      "backtests.cash": "Initial cash (CNY)",
      "backtests.name": "Name (optional)",
      "backtests.run": "Run backtest",
      "backtests.sending": "Sending…",
      "backtests.queued": "Backtest queued: ",
      "backtests.range": "Data available: {first} to {last}",
      "backtests.range.codes": "latest listing among the symbols: {listed}",
      "backtests.range.unknown": "Data range unknown: {error}",
      "backtests.range.before": "more than 14 days before the first day of data, {first} (earliest start {earliest})",
      "backtests.range.after": "after the last complete day of data, {last} (latest end {latest})",
      "backtests.range.allowed": "runs may start from {earliest} and end by {latest}",
      "backtests.range.none": "no trading day is stored between the start and the end",
      "backtests.range.order": "the start is after the end",
      "backtests.range.listed": "{code} was listed only on {listed}",
      "backtests.fix": "fix the marked fields",
      "backtests.symbolsCount": "{n} symbol(s)",
      "backtests.notInMarket": "not in the market: {codes}",
      "backtests.history": "Runs",
      "backtests.search": "Search (strategy, name, symbol)",
      "backtests.searchGo": "Search",
      "backtests.metric.total_return": "Total return",
      "backtests.metric.annual_return": "Annual return",
      "backtests.metric.max_drawdown": "Max drawdown",
      "backtests.metric.sharpe": "Sharpe",
      "backtests.metric.sortino": "Sortino",
      "backtests.metric.calmar": "Calmar",
      "backtests.metric.volatility": "Volatility",
      "backtests.metric.win_rate": "Win rate",
      "backtests.metric.trade_count": "Trades",
      "backtests.metric.final_equity": "Final equity (CNY)",
      "backtests.owner": "Owner",
      "backtests.status.any": "Any status",
      "backtests.refresh": "Refresh",
      "backtests.prev": "Previous",
      "backtests.next": "Next",
      "backtests.pageOf": "Page {page}",
      "backtests.updated": "updated {time}",
      "backtests.loadFailed": "Could not load backtests: {error}",
      "backtests.none": "No backtests.",
      "backtests.col.created": "Created",
      "backtests.col.strategy": "Strategy",
      "backtests.col.owner": "Owner",
      "backtests.col.symbols": "Symbols",
      "backtests.col.period": "Period",
      "backtests.col.status": "Status",
      "backtests.col.return": "Total return",
      "backtests.col.equity": "Final equity",
      "backtests.report": "Report",
      "backtests.cancel": "Cancel",
      "backtests.cancelling": "cancelling…",
      "backtests.starting": "starting…",
      "backtests.progress": "{percent}% · {done}/{days} days",
      "backtests.eta": " · ~{s} s left",
      "backtests.status.queued": "queued",
      "backtests.status.running": "running",
      "backtests.status.succeeded": "succeeded",
      "backtests.status.failed": "failed",
      "backtests.status.cancelled": "cancelled",
      "backtests.select": "select to compare",
      "backtests.compare": "Compare selected ({n})",
      "backtests.compare.title": "Comparison",
      "backtests.compare.need": "Select at least two finished backtests.",
      "backtests.compare.failed": "Could not load the comparison: {error}",
      "backtests.compare.metric": "Metric",
      "backtests.compare.close": "Close",
      "backtests.opt.title": "Optimisation",
      "backtests.opt.space": "Parameter grid (JSON: per parameter a list of values or {min, max, step})",
      "backtests.opt.objective": "Objective",
      "backtests.opt.direction": "Direction",
      "backtests.opt.maximize": "maximize",
      "backtests.opt.minimize": "minimize",
      "backtests.opt.run": "Run optimisation",
      "backtests.opt.badSpace": "not a valid JSON object",
      "backtests.opt.queued": "Optimisation queued: ",
      "backtests.opt.progress": "{done}/{total} points ({skipped} skipped)",
      "backtests.opt.ranked": "Ranked",
      "backtests.opt.rank": "#",
      "backtests.opt.params": "Parameters",
      "backtests.opt.value": "Objective",
      "backtests.opt.feasible": "Feasible",
      "backtests.opt.yes": "yes",
      "backtests.opt.no": "no",
      "backtests.opt.heatmap": "Heatmap: {x} × {y} ({metric})",
      "backtests.opt.noHeatmap": "A heatmap needs exactly two searched parameters.",
      "backtests.opt.loadFailed": "Could not load the optimisation: {error}",
      "backtests.opt.none": "No optimisations yet.",
      "backtests.opt.view": "View",
      "backtests.opt.status.queued": "queued",
      "backtests.opt.status.running": "running",
      "backtests.opt.status.succeeded": "succeeded",
      "backtests.opt.status.failed": "failed",
      "backtests.opt.status.cancelled": "cancelled",
    },
  });

  const t = (key, vars) => window.LHI18n.t(key, vars);
  const LH = () => window.LH;
  const $ = (id) => document.getElementById(id);

  const page = {
    built: false,
    started: false,
    offset: 0,
    runs: [],
    more: false,
    seq: 0,
    timer: null,
    soon: null,
    progress: new Map(), // backtest_id -> the latest backtest.progress payload
    selected: new Set(), // backtest ids chosen for the comparison
    securities: new Map(), // ts_code -> security (list_date)
    range: null, // {first, last, earliest, latest, days} of the stored data (see loadRange), or null while unknown
    rangeError: null,
    compareChart: null,
    compareSeq: 0,
    optId: null,
    optTimer: null,
    optSeq: 0,
    heatmap: null,
  };

  // --- formatting ------------------------------------------------------------------------------------------

  function pct(value) {
    const number = Number(value);
    if (value === undefined || value === null || value === "" || !Number.isFinite(number)) return "—";
    return `${number > 0 ? "+" : ""}${(number * 100).toFixed(2)}%`;
  }

  function num(value, digits = 2) {
    const number = Number(value);
    if (value === undefined || value === null || value === "" || !Number.isFinite(number)) return "—";
    return number.toLocaleString("zh-CN", { minimumFractionDigits: digits, maximumFractionDigits: digits });
  }

  // Money comes as an exact decimal string: grouped as given, never through a float.
  function money(value) {
    return LH().groupDigits(value);
  }

  // A share (a drawdown, a win rate) is a percentage without a sign: it is not a gain or a loss.
  function share(value) {
    const number = Number(value);
    if (value === undefined || value === null || value === "" || !Number.isFinite(number)) return "—";
    return `${(number * 100).toFixed(2)}%`;
  }

  function metricText(value, kind) {
    if (kind === "pct") return pct(value);
    if (kind === "share") return share(value);
    if (kind === "int") return value === undefined || value === null ? "—" : LH().groupDigits(String(value));
    if (kind === "money") return money(value);
    return num(value);
  }

  function signClass(value) {
    const number = Number(value);
    if (value === undefined || value === null || value === "" || !Number.isFinite(number)) return "";
    return number > 0 ? "return-up" : number < 0 ? "return-down" : "";
  }

  function statusText(status) {
    const key = `backtests.status.${status}`;
    return window.LHI18n.has(key) ? t(key) : LH().fmt(status);
  }

  function statusClass(status) {
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

  function nowText() {
    return new Date().toLocaleTimeString("zh-CN", { hour12: false });
  }

  // --- building --------------------------------------------------------------------------------------------

  function label(forId, key) {
    return LH().el("label", { class: "form-label", for: forId, "data-i18n": key, text: t(key) });
  }

  function build() {
    const { el } = LH();
    const view = $("backtests-view");
    if (!view || page.built) return;
    page.built = true;

    const form = el(
      "form",
      { id: "backtest-form", novalidate: "" },
      el(
        "fieldset",
        { id: "backtest-fields" },
        el(
          "div",
          { class: "row g-3" },
          el(
            "div",
            { class: "col-md-6 col-xl-4" },
            el(
              "div",
              { class: "mb-2" },
              label("backtest-strategy", "backtests.strategy"),
              el("select", { class: "form-select", id: "backtest-strategy", "data-field": "strategy" }),
              el("div", { class: "form-text", id: "backtest-strategy-description" }),
            ),
            el("div", { id: "backtest-params", "aria-label": "strategy parameters" }),
          ),
          el(
            "div",
            { class: "col-md-6 col-xl-4" },
            el(
              "div",
              { class: "mb-2" },
              label("backtest-symbols", "backtests.symbols"),
              el("input", {
                class: "form-control mono",
                id: "backtest-symbols",
                list: "backtest-securities",
                autocomplete: "off",
                "data-field": "universe.ts_codes ts_codes universe",
                placeholder: "600405.SH, 000212.SZ",
              }),
              el("datalist", { id: "backtest-securities" }),
              el("div", { class: "form-text", id: "backtest-symbols-count" }),
            ),
            el(
              "div",
              { class: "row g-2 mb-1" },
              el(
                "div",
                { class: "col-6" },
                label("backtest-start", "backtests.start"),
                el("input", { class: "form-control", id: "backtest-start", type: "date", value: "2023-01-03", "data-field": "start" }),
              ),
              el(
                "div",
                { class: "col-6" },
                label("backtest-end", "backtests.end"),
                el("input", { class: "form-control", id: "backtest-end", type: "date", value: "2024-12-31", "data-field": "end" }),
              ),
            ),
            el("div", { class: "form-text mb-2", id: "backtest-range", "aria-live": "polite" }),
            el(
              "div",
              { class: "row g-2 mb-3" },
              el(
                "div",
                { class: "col-6" },
                label("backtest-cash", "backtests.cash"),
                el("input", { class: "form-control", id: "backtest-cash", inputmode: "decimal", value: "1000000", "data-field": "initial_cash" }),
              ),
              el(
                "div",
                { class: "col-6" },
                label("backtest-name", "backtests.name"),
                el("input", { class: "form-control", id: "backtest-name", maxlength: "128", autocomplete: "off", "data-field": "name" }),
              ),
            ),
            el("button", { class: "btn btn-primary w-100", id: "backtest-submit", type: "submit", "data-i18n": "backtests.run", text: t("backtests.run") }),
          ),
          el("div", { class: "col-xl-4" }, el("div", { id: "backtest-result", "aria-live": "polite" })),
        ),
      ),
    );
    form.addEventListener("submit", submitBacktest);

    const formCard = el(
      "div",
      { class: "card shadow-sm mb-3", id: "backtests-card" },
      el("div", { class: "card-header", "data-i18n": "backtests.form.title", text: t("backtests.form.title") }),
      el(
        "div",
        { class: "card-body" },
        el("p", { class: "text-body-secondary small d-none", id: "backtest-readonly", "data-i18n": "backtests.readonly", text: t("backtests.readonly") }),
        form,
      ),
    );

    const statusSelect = el(
      "select",
      { class: "form-select form-select-sm", id: "backtests-status", "aria-label": "status" },
      el("option", { value: "", "data-i18n": "backtests.status.any", text: t("backtests.status.any") }),
      ...["queued", "running", "succeeded", "failed", "cancelled"].map((s) =>
        el("option", { value: s, "data-i18n": `backtests.status.${s}`, text: t(`backtests.status.${s}`) }),
      ),
    );
    const search = el(
      "form",
      { class: "row g-2 align-items-center px-3 pt-3", id: "backtests-search", role: "search" },
      el("div", { class: "col-12 col-md-5" }, el("input", {
        class: "form-control form-control-sm",
        id: "backtests-q",
        type: "search",
        maxlength: "128",
        "data-i18n-placeholder": "backtests.search",
        placeholder: t("backtests.search"),
        "aria-label": t("backtests.search"),
      })),
      el("div", { class: "col-6 col-md-3" }, el("input", {
        class: "form-control form-control-sm",
        id: "backtests-owner",
        maxlength: "64",
        autocomplete: "off",
        placeholder: t("backtests.owner"),
        "aria-label": t("backtests.owner"),
      })),
      el("div", { class: "col-6 col-md-2" }, statusSelect),
      el("div", { class: "col-12 col-md-2 d-grid" }, el("button", { class: "btn btn-outline-primary btn-sm", type: "submit", id: "backtests-search-go", "data-i18n": "backtests.searchGo", text: t("backtests.searchGo") })),
    );
    search.addEventListener("submit", (event) => {
      event.preventDefault();
      page.offset = 0;
      refresh();
    });
    statusSelect.addEventListener("change", () => {
      page.offset = 0;
      refresh();
    });

    const head = (key, cls) => el("th", { class: `text-nowrap ${cls || ""}`, "data-i18n": key, text: t(key) });
    const table = el(
      "table",
      { class: "table table-sm table-hover mb-0 align-middle" },
      el(
        "thead",
        {},
        el(
          "tr",
          {},
          el("th", { class: "text-center" }, el("span", { class: "visually-hidden", "data-i18n": "backtests.select", text: t("backtests.select") })),
          head("backtests.col.created"),
          head("backtests.col.strategy"),
          head("backtests.col.owner"),
          head("backtests.col.symbols", "text-end"),
          head("backtests.col.period"),
          head("backtests.col.status", "backtest-status-col"),
          head("backtests.col.return", "text-end text-nowrap"),
          head("backtests.col.equity", "text-end text-nowrap"),
          el("th"),
        ),
      ),
      el("tbody", { id: "backtests" }),
    );

    const listCard = el(
      "div",
      { class: "card shadow-sm mb-3", id: "backtests-list-card" },
      el(
        "div",
        { class: "card-header d-flex flex-wrap justify-content-between align-items-center gap-2" },
        el("span", { "data-i18n": "backtests.history", text: t("backtests.history") }),
        el(
          "span",
          { class: "d-flex flex-wrap align-items-center gap-2" },
          el("small", { class: "text-body-secondary", id: "backtests-updated" }),
          el("button", { class: "btn btn-outline-primary btn-sm", id: "backtests-compare-go", type: "button", disabled: "", text: t("backtests.compare", { n: 0 }), onclick: () => compare() }),
          el("button", { class: "btn btn-outline-secondary btn-sm", id: "backtests-refresh", type: "button", "data-i18n": "backtests.refresh", text: t("backtests.refresh"), onclick: () => refresh() }),
        ),
      ),
      search,
      el("div", { class: "table-responsive mt-2" }, table),
      el(
        "div",
        { class: "card-footer d-flex justify-content-between align-items-center" },
        el("button", { class: "btn btn-outline-secondary btn-sm", id: "backtests-prev", type: "button", disabled: "", "data-i18n": "backtests.prev", text: t("backtests.prev"), onclick: () => turn(-1) }),
        el("small", { class: "text-body-secondary", id: "backtests-page" }),
        el("button", { class: "btn btn-outline-secondary btn-sm", id: "backtests-next", type: "button", disabled: "", "data-i18n": "backtests.next", text: t("backtests.next"), onclick: () => turn(1) }),
      ),
      el("div", { class: "card-footer small text-danger d-none", id: "backtests-error", role: "alert" }),
    );

    const compareCard = el(
      "div",
      { class: "card shadow-sm mb-3 d-none", id: "backtests-compare" },
      el(
        "div",
        { class: "card-header d-flex justify-content-between align-items-center" },
        el("span", { "data-i18n": "backtests.compare.title", text: t("backtests.compare.title") }),
        el("button", { class: "btn-close", type: "button", "aria-label": t("backtests.compare.close"), onclick: closeCompare }),
      ),
      el("div", { class: "table-responsive" }, el("table", { class: "table table-sm mb-0", id: "backtests-compare-table" })),
      el("div", { class: "card-body" }, el("div", { class: "backtests-chart", id: "backtests-compare-chart" })),
      el("div", { class: "card-footer small text-danger d-none", id: "backtests-compare-error", role: "alert" }),
    );

    view.replaceChildren(
      el("div", { class: "row" }, el("div", { class: "col-12" }, formCard, listCard, compareCard, buildOptimisations())),
    );
    $("backtest-strategy").addEventListener("change", () => {
      LH().clearFieldErrors("backtest-form");
      LH().renderParams("backtest");
      syncOptimisationSpace();
    });
    $("backtest-symbols").addEventListener("input", () => {
      suggestSymbols();
      checkRange();
    });
    $("backtest-start").addEventListener("change", checkRange);
    $("backtest-end").addEventListener("change", checkRange);
    form.addEventListener("input", describeOptimisation);
    form.addEventListener("change", describeOptimisation);
  }

  // --- the form --------------------------------------------------------------------------------------------

  // A datalist completes the whole value, so each suggestion repeats the codes already typed and adds one.
  function suggestSymbols() {
    const { el, parseSymbols } = LH();
    const input = $("backtest-symbols");
    const text = input.value;
    const cut = Math.max(text.lastIndexOf(","), text.lastIndexOf("，"));
    const prefix = cut >= 0 ? `${text.slice(0, cut + 1).trimEnd()} ` : "";
    const partial = text.slice(cut + 1).trim().toUpperCase();
    const chosen = new Set(parseSymbols(text.slice(0, cut + 1)));
    const options = [];
    for (const s of page.securities.values()) {
      if (chosen.has(s.ts_code)) continue;
      if (partial && !s.ts_code.startsWith(partial) && !(s.name || "").includes(partial)) continue;
      options.push(el("option", { value: prefix + s.ts_code, label: `${s.name || ""}${s.is_st ? " (ST)" : ""}` }));
      if (options.length >= 50) break;
    }
    $("backtest-securities").replaceChildren(...options);
    const codes = parseSymbols(text);
    const unknown = page.securities.size ? codes.filter((c) => !page.securities.has(c)) : [];
    $("backtest-symbols-count").textContent =
      t("backtests.symbolsCount", { n: codes.length }) + (unknown.length ? ` · ${t("backtests.notInMarket", { codes: unknown.join(", ") })}` : "");
  }

  // An ISO date moved by a number of days (UTC: no time zone shifts the day).
  function addDays(iso, days) {
    const d = new Date(`${iso}T00:00:00Z`);
    d.setUTCDate(d.getUTCDate() + days);
    return d.toISOString().slice(0, 10);
  }

  // The stored data's range, with the limits the backtest service applies (services/backtest/service.py
  // _check_data_range): a start at most MAX_CLOSED_DAYS before the first trading day; an end whose last trading day
  // on or before it is complete, and at most MAX_CLOSED_DAYS after the last complete day. The calendar is read to the
  // end of next year (the data service stores it to the year's end) so the trading day after the last complete one
  // is known.
  async function loadRange() {
    const through = `${new Date().getUTCFullYear() + 1}-12-31`;
    const result = await LH().api(`/api/v1/calendar?start=${CALENDAR_FROM}&end=${through}`);
    if (!page.started) return;
    const days = result.ok && result.data && Array.isArray(result.data.trading_days) ? result.data.trading_days : null;
    if (!days || !days.length) {
      page.range = null;
      page.rangeError = result.ok ? "no trading days stored" : LH().errorText(result);
    } else {
      const complete = result.data.complete_through || null;
      const today = new Date().toISOString().slice(0, 10);
      // Without a recorded last complete day the service does not limit the end: the newest past trading day is shown.
      const last = complete || days.filter((d) => d <= today).pop() || days[days.length - 1];
      let latest = null;
      if (complete) {
        const next = days.find((d) => d > complete);
        latest = addDays(complete, MAX_CLOSED_DAYS);
        if (next && addDays(next, -1) < latest) latest = addDays(next, -1);
      }
      page.range = { first: days[0], last, earliest: addDays(days[0], -MAX_CLOSED_DAYS), latest, days };
      page.rangeError = null;
    }
    checkRange();
  }

  // The latest listing date among the chosen symbols: a run cannot start before every one of them trades.
  function latestListing(codes) {
    let latest = null;
    for (const code of codes) {
      const s = page.securities.get(code);
      const listed = s && s.list_date ? String(s.list_date) : null;
      if (listed && (!latest || listed > latest.listed)) latest = { code, listed };
    }
    return latest;
  }

  // The range under the dates, and the date fields marked when the run would leave it. Returns the problems.
  function checkRange() {
    const { el } = LH();
    const box = $("backtest-range");
    if (!box) return [];
    const problems = [];
    for (const id of ["backtest-start", "backtest-end"]) {
      const input = $(id);
      input.classList.remove("is-invalid");
      input.parentElement.querySelector(".invalid-feedback")?.remove();
    }
    const start = $("backtest-start").value;
    const end = $("backtest-end").value;
    const listed = latestListing(LH().parseSymbols($("backtest-symbols").value));
    if (page.range) {
      box.replaceChildren(
        el("span", { text: t("backtests.range", { first: page.range.first, last: page.range.last }) }),
        el("span", {
          text: ` · ${t("backtests.range.allowed", { earliest: page.range.earliest, latest: page.range.latest || "—" })}`,
        }),
        listed ? el("span", { text: ` · ${t("backtests.range.codes", { listed: listed.listed })}` }) : "",
      );
      const r = page.range;
      if (start && end && start <= end && !r.days.some((d) => d >= start && d <= end)) {
        problems.push({ field: "start", message: t("backtests.range.none") });
      }
      if (start && start < r.earliest) problems.push({ field: "start", message: t("backtests.range.before", r) });
      if (end && r.latest && end > r.latest) problems.push({ field: "end", message: t("backtests.range.after", r) });
    } else {
      box.textContent = page.rangeError ? t("backtests.range.unknown", { error: page.rangeError }) : "";
    }
    if (start && end && start > end) problems.push({ field: "start", message: t("backtests.range.order") });
    if (listed && end && end < listed.listed) problems.push({ field: "end", message: t("backtests.range.listed", listed) });
    for (const p of problems) {
      const input = $(`backtest-${p.field}`);
      if (input.classList.contains("is-invalid")) continue;
      input.classList.add("is-invalid");
      input.after(el("div", { class: "invalid-feedback", text: p.message }));
    }
    return problems;
  }

  async function submitBacktest(event) {
    event.preventDefault();
    const { el, api, fmt, readParams, clearFieldErrors, markFieldErrors, renderRefusal, messageAsDetail, parseSymbols } = LH();
    const out = $("backtest-result");
    clearFieldErrors("backtest-form");
    const { params, problems } = readParams("backtest");
    suggestSymbols(); // the count under the field follows what is sent
    const rangeProblems = checkRange();
    if (problems.length || rangeProblems.length) {
      markFieldErrors("backtest-form", problems);
      const refusal = { status: 0, data: { code: "invalid_input", message: t("backtests.fix") } };
      out.replaceChildren(renderRefusal(refusal, [...problems, ...rangeProblems]));
      return;
    }
    const name = $("backtest-name").value.trim();
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
    if (name) request.name = name;
    $("backtest-submit").disabled = true;
    out.replaceChildren(el("div", { class: "text-body-secondary small", text: t("backtests.sending") }));
    try {
      const result = await api("/api/v1/backtests", { method: "POST", json: request });
      if (!LH().state.session) return;
      if (result.ok) {
        out.replaceChildren(
          el(
            "div",
            { class: "alert alert-success mb-0", role: "status" },
            el("strong", { text: t("backtests.queued") }),
            el("span", { class: "mono", text: fmt(result.data && result.data.backtest_id) }),
          ),
        );
        page.offset = 0;
        refresh();
        return;
      }
      const details = result.data && Array.isArray(result.data.details) ? result.data.details : [];
      markFieldErrors("backtest-form", details.length ? details : messageAsDetail(result.data));
      out.replaceChildren(renderRefusal(result, details));
    } finally {
      $("backtest-submit").disabled = false;
    }
  }

  // --- the history -----------------------------------------------------------------------------------------

  function showError(id, message) {
    const box = $(id);
    if (!box) return;
    box.textContent = message || "";
    LH().show(box, !!message);
  }

  function turn(step) {
    page.offset = Math.max(0, page.offset + step * PAGE_SIZE);
    refresh();
  }

  // One more than a page is asked for: whether a next page exists is known without a count.
  async function refresh() {
    if (!page.started || !LH().state.session) return;
    clearTimeout(page.timer);
    const seq = ++page.seq;
    const query = new URLSearchParams({ limit: String(PAGE_SIZE + 1), offset: String(page.offset) });
    const q = $("backtests-q").value.trim();
    const owner = $("backtests-owner").value.trim();
    const status = $("backtests-status").value;
    if (q) query.set("q", q);
    if (owner) query.set("owner", owner);
    if (status) query.set("status", status);
    const result = await LH().api(`/api/v1/backtests?${query}`);
    if (!page.started || seq !== page.seq) return;
    if (!result.ok || !Array.isArray(result.data)) {
      showError("backtests-error", t("backtests.loadFailed", { error: LH().errorText(result) }));
      $("backtests-updated").textContent = "";
      return;
    }
    showError("backtests-error", "");
    page.more = result.data.length > PAGE_SIZE;
    page.runs = result.data.slice(0, PAGE_SIZE);
    render();
    $("backtests-updated").textContent = t("backtests.updated", { time: nowText() });
    // Events are the fast path; while a run is open this poll catches the ones missed (e.g. a socket reconnecting).
    if (page.runs.some((b) => ACTIVE.has(b.status))) page.timer = setTimeout(refresh, POLL_MS);
  }

  function render() {
    const { el } = LH();
    const body = $("backtests");
    if (!body) return;
    const canRun = LH().canRunBacktests();
    body.replaceChildren(...page.runs.map((b) => row(b, canRun)));
    if (!page.runs.length) {
      body.append(el("tr", {}, el("td", { colspan: "10", class: "text-body-secondary small", text: t("backtests.none") })));
    }
    for (const id of page.progress.keys()) {
      if (!page.runs.some((b) => b.backtest_id === id && b.status === "running")) page.progress.delete(id);
    }
    $("backtests-prev").disabled = page.offset === 0;
    $("backtests-next").disabled = !page.more;
    $("backtests-page").textContent = t("backtests.pageOf", { page: Math.floor(page.offset / PAGE_SIZE) + 1 });
    renderCompareButton();
  }

  function progressText(p) {
    if (!p) return t("backtests.starting");
    return t("backtests.progress", { percent: LH().fmt(p.percent), done: LH().fmt(p.days_done), days: LH().fmt(p.days) }) +
      (p.eta_s != null ? t("backtests.eta", { s: Math.round(p.eta_s) }) : "");
  }

  function progressBar(backtestId) {
    const { el } = LH();
    const p = page.progress.get(backtestId);
    const percent = p ? Math.max(0, Math.min(100, Number(p.percent) || 0)) : 0;
    const bar = el("div", { class: "progress-bar progress-bar-striped progress-bar-animated", id: `backtest-bar-${backtestId}` });
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
    return [wrap, el("div", { class: "small text-body-secondary", id: `backtest-bar-text-${backtestId}`, text: progressText(p) })];
  }

  // Progress arrives about once a second: the running row's bar is moved in place rather than reloading the table.
  function updateProgressBar(p) {
    const bar = $(`backtest-bar-${p.backtest_id}`);
    if (!bar) return false;
    const percent = Math.max(0, Math.min(100, Number(p.percent) || 0));
    bar.style.width = `${percent}%`;
    bar.parentElement.setAttribute("aria-valuenow", String(percent));
    const caption = $(`backtest-bar-text-${p.backtest_id}`);
    if (caption) caption.textContent = progressText(p);
    return true;
  }

  function row(b, canRun) {
    const { el, fmt, fmtTime, paramsText } = LH();
    const summary = b.summary || {};
    const codes = Array.isArray(b.ts_codes) ? b.ts_codes : [];
    const universeLabel = b.universe && b.universe.label ? String(b.universe.label) : codes.join(", ");

    const statusCell = el(
      "td",
      {},
      el("span", { class: `badge ${statusClass(b.status)}`, text: statusText(b.status) }),
      b.cancel_requested && ACTIVE.has(b.status) ? el("span", { class: "small text-body-secondary ms-1", text: t("backtests.cancelling") }) : null,
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
        text: t("backtests.report"),
        "data-action": "report",
        onclick: () => report("backtests", b.backtest_id),
      }));
    }
    if (canRun && ACTIVE.has(b.status) && !b.cancel_requested) {
      actions.append(el("button", {
        class: "btn btn-outline-danger btn-sm ms-1",
        type: "button",
        text: t("backtests.cancel"),
        onclick: () => cancel(b.backtest_id),
      }));
    }
    const pick = el("input", {
      class: "form-check-input",
      type: "checkbox",
      "aria-label": t("backtests.select"),
      "data-compare": b.backtest_id,
    });
    pick.checked = page.selected.has(b.backtest_id);
    pick.disabled = b.status !== "succeeded";
    pick.addEventListener("change", () => {
      if (pick.checked) page.selected.add(b.backtest_id);
      else page.selected.delete(b.backtest_id);
      renderCompareButton();
    });

    return el(
      "tr",
      { id: `backtest-row-${b.backtest_id}` },
      el("td", { class: "text-center" }, pick),
      el("td", { class: "small text-nowrap", text: fmtTime(b.created_at), title: `backtest ${fmt(b.backtest_id)}` }),
      el(
        "td",
        {},
        el("div", { text: b.name ? `${fmt(b.name)} · ${fmt(b.strategy)}` : fmt(b.strategy) }),
        el("div", { class: "small text-body-secondary mono", text: paramsText(b) }),
      ),
      el("td", { class: "small", text: fmt(b.owner) }),
      el("td", { class: "text-end", text: String(codes.length), title: universeLabel.slice(0, 1000) || undefined }),
      el("td", { class: "small text-nowrap", text: `${fmt(b.start)} → ${fmt(b.end)}` }),
      statusCell,
      el("td", { class: `text-end ${signClass(summary.total_return)}`, "data-col": "return", text: pct(summary.total_return) }),
      el("td", { class: "text-end", text: money(summary.final_equity) }),
      actions,
    );
  }

  async function report(kind, id) {
    const problem = await LH().openReport(kind, id);
    if (problem) showError(kind === "backtests" ? "backtests-error" : "opt-error", problem);
  }

  async function cancel(backtestId) {
    const result = await LH().api(`/api/v1/backtests/${encodeURIComponent(backtestId)}/cancel`, { method: "POST" });
    if (!result.ok) showError("backtests-error", `${backtestId}: ${LH().errorText(result)}`);
    refresh();
  }

  function scheduleRefresh() {
    clearTimeout(page.soon);
    page.soon = setTimeout(refresh, 300);
  }

  function onEvent(event) {
    const p = event.payload || {};
    if (!event.type.startsWith("backtest.") || !p.backtest_id) return;
    if (event.type === "backtest.progress") {
      page.progress.set(p.backtest_id, p);
      if (updateProgressBar(p)) return; // the row already shows it running
    } else if (event.type === "backtest.finished") {
      page.progress.delete(p.backtest_id);
    }
    scheduleRefresh();
  }

  // --- comparison ------------------------------------------------------------------------------------------

  function renderCompareButton() {
    const button = $("backtests-compare-go");
    if (!button) return;
    button.textContent = t("backtests.compare", { n: page.selected.size });
    button.disabled = page.selected.size < 2;
  }

  function closeCompare() {
    page.compareSeq += 1;
    if (page.compareChart) {
      page.compareChart.dispose();
      page.compareChart = null;
    }
    LH().show($("backtests-compare"), false);
  }

  function runLabel(b) {
    return `${b.name || b.strategy} · ${String(b.backtest_id).slice(0, 8)}`;
  }

  async function compare() {
    const { el, api, errorText } = LH();
    const ids = Array.from(page.selected);
    if (ids.length < 2) {
      showError("backtests-compare-error", t("backtests.compare.need"));
      return;
    }
    const seq = ++page.compareSeq;
    LH().show($("backtests-compare"), true);
    showError("backtests-compare-error", "");
    const results = await Promise.all(ids.map((id) => api(`/api/v1/backtests/${encodeURIComponent(id)}`)));
    if (seq !== page.compareSeq) return;
    const failed = results.find((r) => !r.ok || !r.data);
    if (failed) {
      showError("backtests-compare-error", t("backtests.compare.failed", { error: errorText(failed) }));
      return;
    }
    const runs = results.map((r) => r.data);
    const headRow = el("tr", {}, el("th", { text: t("backtests.compare.metric") }), ...runs.map((b) => el("th", { class: "text-end", text: runLabel(b) })));
    const rows = COMPARE_METRICS.map(([key, kind]) =>
      el(
        "tr",
        { "data-metric": key },
        el("th", { class: "small fw-normal text-nowrap", text: t(`backtests.metric.${key}`), title: key }),
        ...runs.map((b) => {
          const summary = b.summary || {};
          const metrics = summary.metrics || {}; // the metrics (docs/metrics.md); final equity is the engine's summary
          const value = key in metrics ? metrics[key] : summary[key];
          const cls = key === "total_return" || key === "annual_return" ? signClass(value) : "";
          return el("td", { class: `text-end ${cls}`, text: metricText(value, kind) });
        }),
      ),
    );
    $("backtests-compare-table").replaceChildren(el("thead", {}, headRow), el("tbody", {}, ...rows));
    let echarts;
    try {
      echarts = await LH().loadEcharts();
    } catch (error) {
      showError("backtests-compare-error", String(error.message || error));
      return;
    }
    if (seq !== page.compareSeq) return;
    const box = $("backtests-compare-chart");
    if (!page.compareChart) page.compareChart = echarts.init(box);
    // Each curve as its equity relative to its own start (1 = the initial cash): runs of other sizes compare.
    page.compareChart.setOption(
      {
        animation: false,
        // Plain-text tooltips: the page's policy refuses the inline styles of HTML ones (and run names stay text).
        tooltip: { trigger: "axis", renderMode: "richText" },
        legend: { type: "scroll", top: 0 },
        grid: { left: 56, right: 16, top: 36, bottom: 56 },
        xAxis: { type: "time" },
        yAxis: { type: "value", scale: true, name: "equity / initial" },
        dataZoom: [{ type: "inside" }, { type: "slider", height: 18, bottom: 12 }],
        series: runs.map((b) => {
          const cash = Number(b.initial_cash);
          return {
            name: runLabel(b),
            type: "line",
            showSymbol: false,
            data: (b.equity_curve || []).map((p) => [p.trade_date, Number(p.equity) / cash]),
          };
        }),
      },
      { notMerge: true },
    );
    page.compareChart.resize();
  }

  // --- optimisations ---------------------------------------------------------------------------------------

  function buildOptimisations() {
    const { el } = LH();
    const form = el(
      "form",
      { id: "opt-form", novalidate: "" },
      el(
        "fieldset",
        { id: "opt-fields" },
        el(
          "div",
          { class: "row g-3" },
          el(
            "div",
            { class: "col-md-6" },
            el("p", { class: "small text-body-secondary mb-2", id: "opt-uses" }),
            label("opt-space", "backtests.opt.space"),
            el("textarea", { class: "form-control mono", id: "opt-space", rows: "4", spellcheck: "false", "data-field": "space" }),
          ),
          el(
            "div",
            { class: "col-md-6" },
            el(
              "div",
              { class: "row g-2 mb-3" },
              el(
                "div",
                { class: "col-7" },
                label("opt-objective", "backtests.opt.objective"),
                el(
                  "select",
                  { class: "form-select", id: "opt-objective", "data-field": "objective" },
                  ...["sharpe", "calmar", "sortino", "total_return", "annual_return", "max_drawdown"].map((m) => el("option", { value: m, text: m })),
                ),
              ),
              el(
                "div",
                { class: "col-5" },
                label("opt-direction", "backtests.opt.direction"),
                el(
                  "select",
                  { class: "form-select", id: "opt-direction", "data-field": "direction" },
                  el("option", { value: "maximize", "data-i18n": "backtests.opt.maximize", text: t("backtests.opt.maximize") }),
                  el("option", { value: "minimize", "data-i18n": "backtests.opt.minimize", text: t("backtests.opt.minimize") }),
                ),
              ),
            ),
            el("button", { class: "btn btn-primary w-100", id: "opt-submit", type: "submit", "data-i18n": "backtests.opt.run", text: t("backtests.opt.run") }),
            el("div", { class: "mt-2", id: "opt-result", "aria-live": "polite" }),
          ),
        ),
      ),
    );
    form.addEventListener("submit", submitOptimisation);
    return el(
      "div",
      { class: "card shadow-sm mb-3", id: "optimisations-card" },
      el("div", { class: "card-header", "data-i18n": "backtests.opt.title", text: t("backtests.opt.title") }),
      el("div", { class: "card-body" }, form),
      el(
        "div",
        { class: "table-responsive border-top" },
        el("table", { class: "table table-sm mb-0 align-middle" }, el("tbody", { id: "opt-list" })),
      ),
      el(
        "div",
        { class: "card-body border-top d-none", id: "opt-detail" },
        el(
          "div",
          { class: "d-flex flex-wrap justify-content-between align-items-center gap-2 mb-2" },
          el("span", {}, el("span", { class: "badge", id: "opt-status" }), el("span", { class: "small ms-2", id: "opt-progress-text" })),
          el("button", { class: "btn btn-outline-primary btn-sm d-none", id: "opt-report", type: "button", text: t("backtests.report"), onclick: () => page.optId && report("optimisations", page.optId) }),
        ),
        el(
          "div",
          { class: "progress mb-3", role: "progressbar", "aria-label": "optimisation progress", "aria-valuemin": "0", "aria-valuemax": "100", id: "opt-progress" },
          el("div", { class: "progress-bar", id: "opt-progress-bar" }),
        ),
        el(
          "div",
          { class: "row g-3" },
          el(
            "div",
            { class: "col-lg-6" },
            el("div", { class: "fw-semibold small mb-1", "data-i18n": "backtests.opt.ranked", text: t("backtests.opt.ranked") }),
            el("div", { class: "table-responsive" }, el("table", { class: "table table-sm mb-0", id: "opt-ranked" })),
          ),
          el(
            "div",
            { class: "col-lg-6" },
            el("div", { class: "fw-semibold small mb-1", id: "opt-heatmap-title" }),
            el("div", { class: "backtests-chart", id: "opt-heatmap" }),
          ),
        ),
      ),
      el("div", { class: "card-footer small text-danger d-none", id: "opt-error", role: "alert" }),
    );
  }

  // The grid starts from the chosen strategy's integer and number parameters: three values around each default.
  function syncOptimisationSpace() {
    const area = $("opt-space");
    if (!area || area.dataset.touched === "1") return;
    const strategy = LH().state.strategies.get($("backtest-strategy").value);
    const props = (strategy && strategy.parameters && strategy.parameters.properties) || {};
    const space = {};
    for (const [name, prop] of Object.entries(props)) {
      if ((prop.type === "integer") && Number.isInteger(prop.default) && Object.keys(space).length < 2) {
        space[name] = [prop.default, prop.default * 2];
      }
    }
    area.value = JSON.stringify(space);
    describeOptimisation();
  }

  // What the optimisation will run: the backtest form's strategy, symbols and dates.
  function describeOptimisation() {
    const uses = $("opt-uses");
    if (!uses) return;
    uses.textContent = `${$("backtest-strategy").value} · ${$("backtest-symbols").value} · ${$("backtest-start").value} → ${$("backtest-end").value}`;
  }

  async function submitOptimisation(event) {
    event.preventDefault();
    const { el, api, clearFieldErrors, markFieldErrors, renderRefusal, parseSymbols, readParams } = LH();
    const out = $("opt-result");
    clearFieldErrors("opt-form");
    let space;
    try {
      space = JSON.parse($("opt-space").value);
      if (!space || typeof space !== "object" || Array.isArray(space)) throw new Error("not an object");
    } catch (error) {
      const problems = [{ field: "space", message: t("backtests.opt.badSpace") }];
      markFieldErrors("opt-form", problems);
      out.replaceChildren(renderRefusal({ status: 0, data: { code: "invalid_input", message: t("backtests.fix") } }, problems));
      return;
    }
    const rangeProblems = checkRange();
    if (rangeProblems.length) {
      out.replaceChildren(renderRefusal({ status: 0, data: { code: "invalid_input", message: t("backtests.fix") } }, rangeProblems));
      return;
    }
    // The backtest form's other parameters are held fixed: the grid varies only what it names.
    const { params } = readParams("backtest");
    const fixed = Object.fromEntries(Object.entries(params).filter(([k]) => !(k in space)));
    const request = {
      strategy: $("backtest-strategy").value,
      method: "grid",
      space,
      fixed,
      objective: $("opt-objective").value,
      direction: $("opt-direction").value,
      ts_codes: parseSymbols($("backtest-symbols").value),
      start: $("backtest-start").value,
      end: $("backtest-end").value,
      config: { initial_cash: $("backtest-cash").value.trim() },
    };
    $("opt-submit").disabled = true;
    try {
      const result = await api("/api/v1/optimisations", { method: "POST", json: request });
      if (!LH().state.session) return;
      if (!result.ok) {
        const details = result.data && Array.isArray(result.data.details) ? result.data.details : [];
        out.replaceChildren(renderRefusal(result, details));
        return;
      }
      out.replaceChildren(
        el("div", { class: "alert alert-success mb-0", role: "status" }, el("strong", { text: t("backtests.opt.queued") }), el("span", { class: "mono", text: result.data.optimisation_id })),
      );
      watchOptimisation(result.data.optimisation_id);
      loadOptimisations();
    } finally {
      $("opt-submit").disabled = false;
    }
  }

  // The caller's recent optimisations (an admin's: everyone's), newest first; View shows one below.
  async function loadOptimisations() {
    if (!page.started) return;
    const { el, api, errorText, fmt } = LH();
    const result = await api(`/api/v1/optimisations?limit=${OPT_LIST}`);
    if (!page.started) return;
    const body = $("opt-list");
    if (!result.ok || !Array.isArray(result.data)) {
      showError("opt-error", t("backtests.opt.loadFailed", { error: errorText(result) }));
      return;
    }
    body.replaceChildren(
      ...result.data.map((o) =>
        el(
          "tr",
          { id: `opt-row-${o.optimisation_id}` },
          el("td", { class: "mono small", text: String(o.optimisation_id).slice(0, 8), title: o.optimisation_id }),
          el("td", { class: "small", text: `${fmt(o.strategy)} · ${fmt(o.owner)}` }),
          el("td", {}, el("span", { class: `badge ${statusClass(o.status)}`, text: t(`backtests.opt.status.${o.status}`) })),
          el("td", { class: "text-end small", text: `${LH().groupDigits(String(o.done_points))}/${LH().groupDigits(String(o.total_points))}` }),
          el(
            "td",
            { class: "text-end" },
            el("button", {
              class: "btn btn-outline-secondary btn-sm",
              type: "button",
              text: t("backtests.opt.view"),
              onclick: () => watchOptimisation(o.optimisation_id),
            }),
          ),
        ),
      ),
    );
    if (!result.data.length) body.append(el("tr", {}, el("td", { colspan: "5", class: "small text-body-secondary", text: t("backtests.opt.none") })));
  }

  function watchOptimisation(id) {
    clearTimeout(page.optTimer);
    page.optId = id;
    LH().show($("opt-detail"), true);
    loadOptimisation();
  }

  async function loadOptimisation() {
    const id = page.optId;
    if (!id || !page.started) return;
    clearTimeout(page.optTimer);
    const seq = ++page.optSeq;
    const path = `/api/v1/optimisations/${encodeURIComponent(id)}`;
    const [record, points] = await Promise.all([LH().api(path), LH().api(`${path}/points?limit=500`)]);
    if (!page.started || seq !== page.optSeq) return;
    if (!record.ok || !points.ok || !Array.isArray(points.data)) {
      showError("opt-error", t("backtests.opt.loadFailed", { error: LH().errorText(record.ok ? points : record) }));
      page.optTimer = setTimeout(loadOptimisation, OPT_POLL_MS * 5);
      return;
    }
    showError("opt-error", "");
    renderOptimisation(record.data, points.data);
    if (ACTIVE.has(record.data.status)) page.optTimer = setTimeout(loadOptimisation, OPT_POLL_MS);
    else if ($(`opt-row-${id}`) && !$(`opt-row-${id}`).textContent.includes(t(`backtests.opt.status.${record.data.status}`))) loadOptimisations();
  }

  function renderOptimisation(o, points) {
    const { el, groupDigits } = LH();
    const status = $("opt-status");
    status.className = `badge ${statusClass(o.status)}`;
    status.textContent = t(`backtests.opt.status.${o.status}`) || o.status;
    status.dataset.status = o.status;
    const total = Number(o.total_points) || 0;
    const done = Number(o.done_points) || 0;
    const percent = total ? Math.round((done / total) * 100) : 0;
    $("opt-progress-bar").style.width = `${percent}%`;
    $("opt-progress").setAttribute("aria-valuenow", String(percent));
    $("opt-progress-text").textContent =
      t("backtests.opt.progress", { done: groupDigits(String(done)), total: groupDigits(String(total)), skipped: groupDigits(String(o.skipped_points || 0)) }) +
      (o.error ? ` · ${o.error}` : "");
    LH().show($("opt-report"), o.status === "succeeded");

    const metric = (o.objective && o.objective.metric) || "objective";
    const kind = /return/.test(metric) ? "pct" : /drawdown|volatility|rate/.test(metric) ? "share" : "num";
    const names = Object.keys(o.space || {});
    $("opt-ranked").replaceChildren(
      el(
        "thead",
        {},
        el(
          "tr",
          {},
          el("th", { class: "text-end text-nowrap", text: t("backtests.opt.rank") }),
          ...names.map((n) => el("th", { class: "mono text-end", text: n })),
          el("th", { class: "text-end text-nowrap", text: `${t("backtests.opt.value")} (${metric})` }),
          el("th", { class: "text-end text-nowrap", text: t("backtests.metric.total_return") }),
          el("th", { class: "text-center text-nowrap", text: t("backtests.opt.feasible") }),
        ),
      ),
      el(
        "tbody",
        {},
        ...points.slice(0, 50).map((p, i) =>
          el(
            "tr",
            { "data-rank": String(i + 1) },
            el("td", { class: "text-end", text: String(i + 1) }),
            ...names.map((n) => el("td", { class: "text-end mono", text: LH().fmt(p.params && p.params[n]) })),
            el("td", { class: "text-end", text: metricText(p.objective, kind) }),
            el("td", { class: `text-end ${signClass(p.metrics && p.metrics.total_return)}`, text: pct(p.metrics && p.metrics.total_return) }),
            el("td", { class: "text-center", text: p.feasible ? t("backtests.opt.yes") : t("backtests.opt.no"), title: p.error || (p.violations || []).join("; ") || undefined }),
          ),
        ),
      ),
    );
    drawHeatmap(o, points, names, metric, kind);
  }

  async function drawHeatmap(o, points, names, metric, kind) {
    const title = $("opt-heatmap-title");
    const box = $("opt-heatmap");
    if (names.length !== 2) {
      title.textContent = t("backtests.opt.noHeatmap");
      LH().show(box, false);
      return;
    }
    const [x, y] = names;
    title.textContent = t("backtests.opt.heatmap", { x, y, metric });
    LH().show(box, true);
    let echarts;
    try {
      echarts = await LH().loadEcharts();
    } catch (error) {
      showError("opt-error", String(error.message || error));
      return;
    }
    const sortValues = (values) => Array.from(new Set(values.map(String))).sort((a, b) => Number(a) - Number(b) || a.localeCompare(b));
    const xs = sortValues(points.map((p) => p.params[x]));
    const ys = sortValues(points.map((p) => p.params[y]));
    const cells = points
      .filter((p) => p.objective !== null && p.objective !== undefined && Number.isFinite(Number(p.objective)))
      .map((p) => [xs.indexOf(String(p.params[x])), ys.indexOf(String(p.params[y])), Number(p.objective)]);
    const values = cells.map((c) => c[2]);
    if (!page.heatmap) page.heatmap = echarts.init(box);
    page.heatmap.setOption(
      {
        animation: false,
        // Plain text, never HTML: the parameter names and values come from the server.
        tooltip: { renderMode: "richText", formatter: (p) => `${x}=${xs[p.value[0]]}, ${y}=${ys[p.value[1]]}: ${metricText(p.value[2], kind)}` },
        grid: { left: 56, right: 16, top: 16, bottom: 96 },
        xAxis: { type: "category", data: xs, name: x, nameLocation: "center", nameGap: 26 },
        yAxis: { type: "category", data: ys, name: y },
        visualMap: {
          min: values.length ? Math.min(...values) : 0,
          max: values.length ? Math.max(...values) : 1,
          calculable: true,
          orient: "horizontal",
          left: "center",
          bottom: 0,
          itemHeight: 80,
          formatter: (value) => metricText(value, kind),
          inRange: { color: ["#198754", "#ffc107", "#dc3545"] }, // low green, high red, as A-share screens colour
        },
        series: [{ type: "heatmap", data: cells, label: { show: xs.length * ys.length <= 36, formatter: (p) => metricText(p.value[2], kind) } }],
      },
      { notMerge: true },
    );
    page.heatmap.resize();
  }

  // --- the page's life -------------------------------------------------------------------------------------

  function applyRole() {
    const role = LH().state.session && LH().state.session.role;
    const canRun = role === "trader" || role === "admin";
    $("backtest-fields").disabled = !canRun;
    $("opt-fields").disabled = !canRun;
    LH().show($("backtest-readonly"), !canRun);
    // Only an admin sees everyone's runs: the owner filter is theirs.
    LH().show($("backtests-owner").parentElement, role === "admin");
  }

  window.addEventListener("lh:securities", (event) => {
    if (!page.built) return;
    const list = Array.isArray(event.detail) ? event.detail : [];
    page.securities = new Map(list.map((s) => [s.ts_code, s]));
    // The demo market is small: its first few symbols make a backtest that runs at once.
    if (!$("backtest-symbols").value.trim()) {
      $("backtest-symbols").value = list.slice(0, DEFAULT_SYMBOLS).map((s) => s.ts_code).join(", ");
    }
    suggestSymbols();
    checkRange();
    syncOptimisationSpace();
  });

  window.addEventListener("lh:strategies", (event) => {
    if (!page.built) return;
    if (event.detail && event.detail.ok) {
      LH().fillStrategies("backtest");
      syncOptimisationSpace();
    } else {
      $("backtest-result").replaceChildren(
        LH().el("div", { class: "alert alert-danger mb-0", role: "alert", text: `${t("backtests.loadFailed", { error: event.detail && event.detail.error })}` }),
      );
    }
  });

  window.addEventListener("lh:lang", () => {
    if (!page.built) return;
    window.LHI18n.apply($("backtests-view"));
    $("backtests-q").placeholder = t("backtests.search");
    $("backtests-owner").placeholder = t("backtests.owner");
    render();
    checkRange();
    suggestSymbols();
    if (page.optId) loadOptimisation(); // its table's words
    if (!$("backtests-compare").classList.contains("d-none")) compare();
  });

  window.addEventListener("resize", () => {
    if (page.compareChart) page.compareChart.resize();
    if (page.heatmap) page.heatmap.resize();
  });

  document.addEventListener("DOMContentLoaded", () => {
    build();
    $("opt-space")?.addEventListener("input", () => {
      $("opt-space").dataset.touched = "1";
    });
  });

  window.LHPages = window.LHPages || {};
  window.LHPages.backtests = {
    start() {
      build();
      page.started = true;
      page.offset = 0;
      applyRole();
      // The strategies or securities may have loaded before this start: take them as they are.
      if (LH().state.strategies.size) LH().fillStrategies("backtest");
      if (LH().state.securities.size) {
        page.securities = new Map(LH().state.securities);
        suggestSymbols();
      }
      syncOptimisationSpace();
      refresh();
      loadRange();
      loadOptimisations();
    },
    stop() {
      page.started = false;
      page.seq += 1;
      page.optSeq += 1;
      clearTimeout(page.timer);
      clearTimeout(page.soon);
      clearTimeout(page.optTimer);
      page.progress.clear();
      page.selected.clear();
      page.runs = [];
      page.optId = null;
      closeCompare();
      if (page.heatmap) {
        page.heatmap.dispose();
        page.heatmap = null;
      }
      if (!page.built) return;
      $("backtests").replaceChildren();
      $("backtest-result").replaceChildren();
      $("opt-result").replaceChildren();
      LH().show($("opt-detail"), false);
      $("opt-list").replaceChildren();
    },
    show() {
      if (page.compareChart) page.compareChart.resize(); // drawn while hidden, it had no size
      if (page.heatmap) page.heatmap.resize();
    },
    refresh() {
      refresh();
      loadOptimisations();
      loadOptimisation();
    },
    onEvent,
  };
})();
