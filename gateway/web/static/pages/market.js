// LiangHua web UI, the Market page (issue 16 §3, docs/market.md): search a security by code, name or pinyin initials
// (the data service's /securities/search), its daily K-line chart (ECharts, red up / green down) with volume, overlay
// and pane indicators chosen from the indicator catalogue and computed on the server (/indicators/series, TA-Lib),
// the days closed at a limit and the user's own trades marked, the day's 1-minute bars when the live feed has them,
// and a quote box (last, change, limits, five levels). Routed as #market/<ts_code>; "Trade" opens the desk's ticket.
// Server data reaches the page through textContent only. Prices are shown as the exact strings the services send;
// the chart draws floats (a pixel is far coarser than a fen), its tooltip prints the strings.
"use strict";

(() => {
  const { $, api, el, show, fmt, groupDigits, errorText, state } = window.LH;
  const t = (key, vars) => window.LHI18n.t(key, vars);

  const SEARCH_DELAY_MS = 150;
  const SEARCH_LIMIT = 12;
  const VISIBLE_BARS = 250; // the zoom's first window: about a year of daily bars
  // Candles and bars drawn as one path per series (ECharts' large mode) from this many in the window, not one element
  // per bar: every redraw rebuilds the elements, and a year's window has 250 of each.
  const LARGE_FROM = 100;
  const PANE_TOP = 22; // a pane: its legend, then its grid
  const PANE_H = 90;
  const PANE_BOX = PANE_TOP + PANE_H + 8;
  const UP = "#dc3545"; // A-share colours: red up (Bootstrap's danger), green down (its success)
  const DOWN = "#198754";
  const LINE_COLOURS = ["#f0ad4e", "#6f42c1", "#0d6efd", "#20c997", "#d63384", "#6c757d"];
  const RANGES = { "1y": 1, "3y": 3, "5y": 5, "10y": 10 };
  const DEFAULT_RANGE = "10y";
  // The staples, as catalogue asks: MA and RSI in the periods Chinese charting software shows.
  const PRESETS = {
    MA: { label: "MA", place: "overlay", asks: [5, 10, 20].map((n) => ({ name: "MA", params: { timeperiod: n } })) },
    BOLL: { label: "BOLL", place: "overlay", asks: [{ name: "BBANDS", params: { timeperiod: 20 } }] },
    MACD: { label: "MACD", place: "pane", asks: [{ name: "MACD_CN", params: {} }] },
    KDJ: { label: "KDJ", place: "pane", asks: [{ name: "KDJ_CN", params: {} }] },
    RSI: { label: "RSI", place: "pane", asks: [6, 12, 24].map((n) => ({ name: "RSI", params: { timeperiod: n } })) },
  };
  const DEFAULT_INDICATORS = ["MA"];

  const market = {
    started: false,
    built: false,
    code: null, // the security shown
    security: null,
    range: DEFAULT_RANGE,
    mode: "day", // day | minute
    bars: [], // the daily bars of the range, as the data API gives them
    loading: false, // the bars asked for and not in yet
    limitDays: [],
    trades: [],
    minute: null, // {day, bars} or null
    live: null, // the latest live quote
    reference: null, // GET /quotes/{code}: the next session's limits
    chosen: [], // indicator keys shown: preset names or catalogue names
    defaulted: false, // chosen set to the defaults (once a session)
    series: new Map(), // `${code}|${range}|${key}` -> {dates, items: [{name, params, outputs}], drawn}
    pending: new Map(), // `${code}|${range}|${key}` -> the request on its way for it
    base: null, // what the daily chart draws from the bars (dailyBase), null when they change
    drawnBase: null, // the base the chart shows, so an indicator change redraws in place
    drawnIds: [], // the ids of the series the main chart shows, in order (an overlay added redraws only what is new)
    panes: new Map(), // indicator key -> {key, node, chart}: the panes under the main chart, one ECharts instance each
    zoom: null, // the window the user zoomed to ({start, end} in % or {startValue, endValue}), null: the first one
    waiting: null, // {charts, open}: the charts a redraw updated whose drawing has not finished yet
    catalogue: new Map(), // name -> IndicatorInfo
    chart: null,
    seq: 0, // the latest open(): answers for another security are dropped
    chartSeq: 0, // the latest chart load (a range change): an older one's answer is dropped
    quoteError: "",
    searchSeq: 0,
    searchTimer: null,
    drawPending: false,
  };

  // --- i18n -----------------------------------------------------------------------------------------------------------

  window.LHI18n.add({
    zh: {
      "market.search": "搜索证券",
      "market.search.placeholder": "代码、名称或拼音首字母（如 payh）",
      "market.search.none": "没有匹配“{q}”的证券",
      "market.search.failed": "搜索失败：{reason}",
      "market.pick": "搜索并选择一只证券，查看它的 K 线和报价。",
      "market.trade": "交易",
      "market.range": "区间",
      "market.range.1y": "1年",
      "market.range.3y": "3年",
      "market.range.5y": "5年",
      "market.range.10y": "10年",
      "market.mode.day": "日K",
      "market.mode.minute": "分钟",
      "market.indicators": "指标",
      "market.indicator.add": "添加指标…",
      "market.indicator.presets": "常用",
      "market.indicator.catalogue": "指标库",
      "market.indicator.remove": "移除 {name}",
      "market.volume": "成交量",
      "market.chart.loading": "加载图表…",
      "market.chart.failed": "图表加载失败：{reason}",
      "market.chart.empty": "该区间没有日线数据。",
      "market.chart.count": "{n} 根日K · {from} 至 {to}",
      "market.minute.none": "实时行情今天还没有这只证券的分钟线。",
      "market.minute.count": "{day} · {n} 根1分钟K线",
      "market.limit.up": "涨停",
      "market.limit.down": "跌停",
      "market.trades.count": "我的成交 {n} 笔",
      "market.trades.failed": "成交记录加载失败：{reason}",
      "market.trade.buy": "买入",
      "market.trade.sell": "卖出",
      "market.quote.last": "最新",
      "market.quote.close": "收盘",
      "market.quote.change": "涨跌",
      "market.quote.pct": "涨跌幅",
      "market.quote.open": "今开",
      "market.quote.high": "最高",
      "market.quote.low": "最低",
      "market.quote.volume": "成交量（股）",
      "market.quote.amount": "成交额",
      "market.quote.limitUp": "涨停价",
      "market.quote.limitDown": "跌停价",
      "market.quote.ask": "卖{n}",
      "market.quote.bid": "买{n}",
      "market.quote.live": "实时 · {time}",
      "market.quote.notLive": "无实时行情：显示 {day} 收盘",
      "market.quote.failed": "报价加载失败：{reason}",
      "market.tooltip": "{date}\n开 {open}  高 {high}\n低 {low}  收 {close}\n量 {vol}",
      "market.unknown": "未知证券 {code}",
    },
    en: {
      "market.search": "Search securities",
      "market.search.placeholder": "Code, name or pinyin initials (e.g. payh)",
      "market.search.none": "No security matches “{q}”",
      "market.search.failed": "Search failed: {reason}",
      "market.pick": "Search for a security and pick it to see its K-line chart and quote.",
      "market.trade": "Trade",
      "market.range": "Range",
      "market.range.1y": "1Y",
      "market.range.3y": "3Y",
      "market.range.5y": "5Y",
      "market.range.10y": "10Y",
      "market.mode.day": "Daily",
      "market.mode.minute": "1 min",
      "market.indicators": "Indicators",
      "market.indicator.add": "Add an indicator…",
      "market.indicator.presets": "Common",
      "market.indicator.catalogue": "Catalogue",
      "market.indicator.remove": "Remove {name}",
      "market.volume": "Volume",
      "market.chart.loading": "Loading the chart…",
      "market.chart.failed": "The chart could not be loaded: {reason}",
      "market.chart.empty": "No daily bars in this range.",
      "market.chart.count": "{n} daily candles · {from} to {to}",
      "market.minute.none": "The live feed has no 1-minute bars of this security today.",
      "market.minute.count": "{day} · {n} one-minute bars",
      "market.limit.up": "Limit up",
      "market.limit.down": "Limit down",
      "market.trades.count": "My trades: {n}",
      "market.trades.failed": "Trades could not be loaded: {reason}",
      "market.trade.buy": "Buy",
      "market.trade.sell": "Sell",
      "market.quote.last": "Last",
      "market.quote.close": "Close",
      "market.quote.change": "Change",
      "market.quote.pct": "Change %",
      "market.quote.open": "Open",
      "market.quote.high": "High",
      "market.quote.low": "Low",
      "market.quote.volume": "Volume (shares)",
      "market.quote.amount": "Amount",
      "market.quote.limitUp": "Limit up",
      "market.quote.limitDown": "Limit down",
      "market.quote.ask": "Ask {n}",
      "market.quote.bid": "Bid {n}",
      "market.quote.live": "Live · {time}",
      "market.quote.notLive": "No live quote: the close of {day}",
      "market.quote.failed": "The quote could not be loaded: {reason}",
      "market.tooltip": "{date}\nO {open}  H {high}\nL {low}  C {close}\nVol {vol}",
      "market.unknown": "Unknown security {code}",
    },
  });

  // --- exact decimals -------------------------------------------------------------------------------------------------

  // "10.5" -> 1050 fen (prices have two decimals); null for anything else.
  function toFen(text) {
    const match = /^(-?)(\d+)(?:\.(\d{1,2}))?$/.exec(String(text ?? ""));
    if (!match) return null;
    const fen = Number(match[2]) * 100 + Number((match[3] || "").padEnd(2, "0"));
    return match[1] ? -fen : fen;
  }

  function fenText(fen) {
    const sign = fen < 0 ? "-" : "";
    const abs = Math.abs(fen);
    return `${sign}${groupDigits(String(Math.floor(abs / 100)))}.${String(abs % 100).padStart(2, "0")}`;
  }

  // The change and change % of `last` against `base` (decimal strings), signed, or null.
  function change(last, base) {
    const a = toFen(last);
    const b = toFen(base);
    if (a === null || b === null || b <= 0) return null;
    const diff = a - b;
    const bp = Math.round((Math.abs(diff) * 10000) / b); // hundredths of a percent, from integers
    const sign = diff > 0 ? "+" : diff < 0 ? "-" : "";
    const pct = `${sign}${Math.floor(bp / 100)}.${String(bp % 100).padStart(2, "0")}%`;
    return { diff, text: `${diff > 0 ? "+" : ""}${fenText(diff)}`, pct, cls: diff > 0 ? "return-up" : diff < 0 ? "return-down" : "" };
  }

  function isoDay(date) {
    return date.toISOString().slice(0, 10);
  }

  const SHANGHAI_DAY = new Intl.DateTimeFormat("sv-SE", { timeZone: "Asia/Shanghai", year: "numeric", month: "2-digit", day: "2-digit" });
  const SHANGHAI_TIME = new Intl.DateTimeFormat("zh-CN", { timeZone: "Asia/Shanghai", hour12: false, hour: "2-digit", minute: "2-digit", second: "2-digit" });

  // --- the page's skeleton ------------------------------------------------------------------------------------------

  function build() {
    if (market.built) return;
    market.built = true;
    const rangeButtons = Object.keys(RANGES).map((key) => el("button", {
      type: "button", class: "btn btn-outline-secondary", "data-range": key, "data-i18n": `market.range.${key}`,
      onclick: () => setRange(key),
    }));
    const view = $("market-view");
    view.replaceChildren(el(
      "div",
      { class: "row g-3" },
      el(
        "div",
        { class: "col-lg-3" },
        el(
          "div",
          { class: "card shadow-sm" },
          el("div", { class: "card-header", "data-i18n": "market.search" }),
          el(
            "div",
            { class: "card-body" },
            el("input", {
              id: "market-search", class: "form-control", type: "search", autocomplete: "off", maxlength: "20",
              "data-i18n-placeholder": "market.search.placeholder", "data-i18n-aria-label": "market.search",
            }),
            el("div", { id: "market-search-error", class: "small text-danger mt-2 d-none", role: "alert" }),
            el("div", { id: "market-results", class: "list-group list-group-flush mt-2 market-results" }),
          ),
        ),
        el("div", { class: "card shadow-sm mt-3 d-none", id: "market-quote-card" },
          el("div", { class: "card-body p-2", id: "market-quote" })),
      ),
      el(
        "div",
        { class: "col-lg-9" },
        el("p", { id: "market-pick", class: "text-body-secondary", "data-i18n": "market.pick" }),
        el(
          "div",
          { class: "card shadow-sm d-none", id: "market-chart-card" },
          el(
            "div",
            { class: "card-header d-flex flex-wrap gap-2 align-items-center justify-content-between" },
            el(
              "div",
              { class: "d-flex align-items-baseline gap-2 flex-wrap" },
              el("span", { class: "fw-semibold", id: "market-name" }),
              el("span", { class: "mono text-body-secondary", id: "market-code" }),
              el("span", { class: "mono", id: "market-headline" }),
            ),
            el("button", { type: "button", class: "btn btn-primary btn-sm", id: "market-trade", "data-i18n": "market.trade", onclick: openTicket }),
          ),
          el(
            "div",
            { class: "card-body" },
            el(
              "div",
              { class: "d-flex flex-wrap gap-2 align-items-center mb-2" },
              el("div", { class: "btn-group btn-group-sm", role: "group", id: "market-mode" },
                el("button", { type: "button", class: "btn btn-outline-secondary", "data-mode": "day", "data-i18n": "market.mode.day", onclick: () => setMode("day") }),
                el("button", { type: "button", class: "btn btn-outline-secondary", "data-mode": "minute", "data-i18n": "market.mode.minute", onclick: () => setMode("minute") })),
              el("div", { class: "btn-group btn-group-sm", role: "group", id: "market-range", "data-i18n-aria-label": "market.range" }, ...rangeButtons),
              el("select", { class: "form-select form-select-sm w-auto", id: "market-indicator-add", "data-i18n-aria-label": "market.indicators", onchange: onIndicatorPick }),
              el("div", { class: "d-flex flex-wrap gap-1", id: "market-indicators" }),
            ),
            el("div", { id: "market-chart", class: "market-chart", role: "img" }),
            el("div", { id: "market-panes" }), // one chart of its own per indicator pane (a pane changed redraws only it)
            el("div", { class: "small text-body-secondary mt-1", id: "market-chart-note", "aria-live": "polite" }),
            el("div", { class: "small text-danger d-none", id: "market-chart-error", role: "alert" }),
          ),
        ),
      ),
    ));
    window.LHI18n.apply(view);
    $("market-search").addEventListener("input", onSearchInput);
    $("market-search").addEventListener("keydown", (event) => {
      if (event.key !== "Enter") return;
      event.preventDefault();
      const first = $("market-results").querySelector("[data-code]");
      if (first) first.click();
    });
    fillIndicatorSelect();
    renderIndicatorChips();
    markButtons();
  }

  function markButtons() {
    for (const b of document.querySelectorAll("#market-range [data-range]")) b.classList.toggle("active", b.dataset.range === market.range);
    for (const b of document.querySelectorAll("#market-mode [data-mode]")) b.classList.toggle("active", b.dataset.mode === market.mode);
    const range = $("market-range");
    if (range) show(range, market.mode === "day");
  }

  // --- search -----------------------------------------------------------------------------------------------------

  function onSearchInput() {
    clearTimeout(market.searchTimer);
    market.searchTimer = setTimeout(runSearch, SEARCH_DELAY_MS);
  }

  async function runSearch() {
    const q = $("market-search").value.trim();
    const seq = ++market.searchSeq;
    const errorBox = $("market-search-error");
    if (!q) {
      $("market-results").replaceChildren();
      show(errorBox, false);
      return;
    }
    const result = await api(`/api/v1/securities/search?q=${encodeURIComponent(q)}&limit=${SEARCH_LIMIT}`);
    if (seq !== market.searchSeq || !state.session) return;
    if (!result.ok || !Array.isArray(result.data)) {
      errorBox.textContent = t("market.search.failed", { reason: errorText(result) });
      show(errorBox, true);
      return;
    }
    show(errorBox, false);
    const items = result.data.map((s) => el(
      "button",
      {
        type: "button", class: "list-group-item list-group-item-action d-flex justify-content-between gap-2",
        "data-code": s.ts_code,
        onclick: () => {
          location.hash = `#market/${s.ts_code}`;
          $("market-results").replaceChildren(); // picked: the list gives the chart its room (a phone's screen)
        },
      },
      el("span", {}, el("span", { text: s.name }), el("span", { class: "small text-body-secondary ms-2 mono", text: s.pinyin })),
      el("span", { class: "mono small", text: s.ts_code }),
    ));
    if (!items.length) items.push(el("div", { class: "list-group-item small text-body-secondary", text: t("market.search.none", { q }) }));
    $("market-results").replaceChildren(...items);
  }

  // --- the indicator choice ------------------------------------------------------------------------------------------

  async function loadCatalogue() {
    if (market.catalogue.size) return;
    const result = await api("/api/v1/indicators");
    if (!result.ok || !Array.isArray(result.data)) return; // the presets still work; the select offers only them
    for (const info of result.data) market.catalogue.set(info.name, info);
    fillIndicatorSelect();
  }

  function fillIndicatorSelect() {
    const select = $("market-indicator-add");
    if (!select) return;
    const presets = el("optgroup", { label: t("market.indicator.presets") },
      ...Object.keys(PRESETS).map((key) => el("option", { value: key, text: PRESETS[key].label })));
    const names = [...market.catalogue.keys()].filter((n) => !(n in PRESETS));
    const catalogue = el("optgroup", { label: t("market.indicator.catalogue") },
      ...names.map((n) => el("option", { value: n, text: `${n} · ${market.catalogue.get(n).display_name || ""}` })));
    select.replaceChildren(el("option", { value: "", text: t("market.indicator.add") }), presets, ...(names.length ? [catalogue] : []));
    select.value = "";
  }

  // A chosen indicator: a preset, or any catalogue entry with its defaults (an overlay when TA-Lib files it under
  // "Overlap Studies", else a pane of its own).
  function spec(key) {
    if (PRESETS[key]) return PRESETS[key];
    const info = market.catalogue.get(key);
    const overlay = info && info.group === "Overlap Studies";
    return { label: key, place: overlay ? "overlay" : "pane", asks: [{ name: key, params: {} }] };
  }

  function onIndicatorPick(event) {
    const key = event.target.value;
    event.target.value = "";
    if (!key || market.chosen.includes(key)) return;
    performance.mark("market:indicator-change");
    market.chosen.push(key);
    renderIndicatorChips();
    refreshIndicators();
  }

  function removeIndicator(key) {
    performance.mark("market:indicator-change");
    market.chosen = market.chosen.filter((k) => k !== key);
    renderIndicatorChips();
    drawSoon();
  }

  function renderIndicatorChips() {
    const box = $("market-indicators");
    if (!box) return;
    box.replaceChildren(...market.chosen.map((key) => el(
      "span",
      { class: "badge text-bg-light border d-inline-flex align-items-center gap-1", "data-indicator": key },
      spec(key).label,
      el("button", {
        type: "button", class: "btn-close btn-close-sm market-chip-close",
        "aria-label": t("market.indicator.remove", { name: spec(key).label }), onclick: () => removeIndicator(key),
      }),
    )));
  }

  function seriesKey(key) {
    return `${market.code}|${market.range}|${key}`;
  }

  // Computes (on the server) the chosen indicators not yet fetched for this code and range, then redraws.
  async function refreshIndicators() {
    if (await fetchIndicators(market.chartSeq)) drawSoon();
  }

  const MAX_ASKS = 8; // indicators per /indicators/series request

  // Asks the server for the series of `keys` (indicator keys) not fetched nor on their way for this code and range,
  // in requests of at most MAX_ASKS indicators; each key's request is kept in market.pending until it is answered.
  // An answer is kept under the code and range it was asked for, whatever is shown by then. Gives the requests.
  function requestSeries(keys) {
    const todo = keys.filter((key) => !market.series.has(seriesKey(key)) && !market.pending.has(seriesKey(key)));
    if (!todo.length || !market.code) return [];
    const { start, end } = rangeDays();
    const batches = [];
    for (const key of todo) {
      const n = spec(key).asks.length;
      const batch = batches[batches.length - 1];
      if (batch && batch.size + n <= MAX_ASKS) {
        batch.keys.push(key);
        batch.size += n;
      } else batches.push({ keys: [key], size: n });
    }
    return batches.map((batch) => {
      const keysOf = batch.keys.map((key) => [key, seriesKey(key)]);
      const asked = api("/api/v1/indicators/series", {
        method: "POST",
        json: { ts_code: market.code, start, end, indicators: batch.keys.flatMap((key) => spec(key).asks) },
      }).then((result) => {
        for (const [, k] of keysOf) market.pending.delete(k);
        if (!result.ok || !result.data) return result;
        let at = 0;
        for (const [key, k] of keysOf) {
          const n = spec(key).asks.length;
          market.series.set(k, { dates: result.data.dates, items: result.data.series.slice(at, at + n) });
          at += n;
        }
        return result;
      });
      for (const [, k] of keysOf) market.pending.set(k, asked);
      return asked;
    });
  }

  // The chosen indicators' series not yet fetched for this code and range (asked now, or awaited when already on
  // their way); false when the answer is stale or failed (the failure is shown).
  async function fetchIndicators(seq) {
    requestSeries(market.chosen);
    const waits = [...new Set(market.chosen.map((key) => market.pending.get(seriesKey(key))).filter(Boolean))];
    const results = await Promise.all(waits);
    if (seq !== market.chartSeq || !state.session) return false;
    const failed = results.find((result) => !result.ok || !result.data);
    if (failed) {
      chartError(t("market.chart.failed", { reason: errorText(failed) }));
      return false;
    }
    return true;
  }

  // --- opening a security --------------------------------------------------------------------------------------------

  function rangeDays() {
    const end = new Date();
    const start = new Date(end);
    start.setFullYear(end.getFullYear() - RANGES[market.range]);
    return { start: isoDay(start), end: isoDay(end) };
  }

  function setRange(key) {
    if (key === market.range) return;
    market.range = key;
    markButtons();
    if (market.code) loadChart();
  }

  function setMode(mode) {
    if (mode === market.mode) return;
    market.mode = mode;
    markButtons();
    if (market.mode === "minute") loadMinute();
    else drawSoon();
  }

  async function open(code) {
    build();
    if (code === market.code) return;
    market.code = code;
    market.seq += 1;
    market.chartSeq += 1;
    market.quoteError = "";
    market.security = null;
    market.live = null;
    market.reference = null;
    market.minute = null;
    market.bars = [];
    market.limitDays = [];
    market.trades = [];
    show($("market-pick"), !code);
    show($("market-chart-card"), !!code);
    show($("market-quote-card"), !!code);
    market.base = null;
    market.drawnBase = null;
    market.series.clear(); // the previous security's indicators (an answer still on its way keeps its own key)
    clearCharts();
    delete $("market-chart").dataset.candles; // the previous security's count is not this one's
    if (!code) return;
    $("market-code").textContent = code;
    $("market-name").textContent = "";
    $("market-headline").textContent = "";
    $("market-quote").replaceChildren();
    subscribe();
    const seq = market.seq;
    loadQuote();
    loadChart();
    const found = await api(`/api/v1/securities/search?q=${encodeURIComponent(code)}&limit=1`);
    if (seq !== market.seq) return;
    if (found.ok && Array.isArray(found.data) && found.data[0] && found.data[0].ts_code === code) {
      market.security = found.data[0];
      $("market-name").textContent = market.security.name;
    }
  }

  async function loadChart() {
    const seq = ++market.chartSeq;
    const code = market.code;
    const { start, end } = rangeDays();
    chartError("");
    market.loading = true; // no chart (not even an empty one) until the bars are in
    $("market-chart-note").textContent = t("market.chart.loading");
    const query = `ts_code=${encodeURIComponent(code)}&start=${start}&end=${end}`;
    const account = state.session && state.session.accountId;
    const indicators = fetchIndicators(seq); // beside the bars, not after them
    const [bars, limits, trades] = await Promise.all([
      api(`/api/v1/bars?${query}`),
      api(`/api/v1/bars/limits?${query}`),
      api(`/api/v1/trades?ts_code=${encodeURIComponent(code)}&limit=1000${account ? `&account_id=${encodeURIComponent(account)}` : ""}`),
    ]);
    if (seq !== market.chartSeq || code !== market.code || !state.session) return;
    market.loading = false;
    if (!bars.ok || !bars.data) {
      market.bars = [];
      $("market-chart-note").textContent = "";
      chartError(bars.data && bars.data.code === "unknown_security"
        ? t("market.unknown", { code })
        : t("market.chart.failed", { reason: errorText(bars) }));
      market.base = null;
      market.drawnBase = null;
      clearCharts();
      return;
    }
    market.bars = bars.data.bars || [];
    market.limitDays = limits.ok && limits.data ? limits.data.days || [] : [];
    const problems = [];
    if (!limits.ok) problems.push(t("market.chart.failed", { reason: errorText(limits) }));
    if (trades.ok && Array.isArray(trades.data)) market.trades = trades.data.filter((tr) => tr.ts_code === code);
    else if (trades.status !== 403 && trades.status !== 404) problems.push(t("market.trades.failed", { reason: errorText(trades) }));
    market.base = null;
    chartError(problems.join(" · "));
    renderQuote();
    await indicators;
    if (seq !== market.chartSeq) return;
    drawSoon(); // drawn without the indicators that failed (their error is shown)
    // Then the common indicators not shown, computed ahead (after the first paint, not beside it): picking one of
    // them redraws without a request.
    requestAnimationFrame(() => {
      if (seq !== market.chartSeq) return;
      Promise.all(requestSeries(Object.keys(PRESETS))).then(() => performance.mark("market:indicators-ahead"));
    });
  }

  async function loadMinute() {
    const seq = market.seq;
    const code = market.code;
    const result = await api(`/api/v1/quotes/${encodeURIComponent(code)}/bars?freq=1m`);
    if (seq !== market.seq || market.mode !== "minute") return;
    if (result.ok && result.data && Array.isArray(result.data.bars)) {
      market.minute = { day: result.data.day, bars: result.data.bars };
      chartError("");
    } else {
      market.minute = { day: null, bars: [] };
      const known = result.data && ["no_live_quote", "quotes_feed_off"].includes(result.data.code);
      chartError(known ? "" : t("market.chart.failed", { reason: errorText(result) }));
    }
    drawSoon();
  }

  // --- the quote box ------------------------------------------------------------------------------------------------

  async function loadQuote() {
    const seq = market.seq;
    const code = market.code;
    const [live, reference] = await Promise.all([
      api(`/api/v1/quotes/${encodeURIComponent(code)}/live`),
      api(`/api/v1/quotes/${encodeURIComponent(code)}`),
    ]);
    if (seq !== market.seq) return;
    market.reference = reference.ok ? reference.data : null;
    if (live.ok && live.data) onQuote(live.data);
    market.quoteError = !live.ok && !(live.data && live.data.code === "no_live_quote") ? errorText(live)
      : !reference.ok ? errorText(reference) : "";
    renderQuote();
  }

  function onQuote(q) {
    if (!q || q.ts_code !== market.code) return;
    if (market.live && market.live.time && q.time && new Date(q.time) < new Date(market.live.time)) return;
    market.live = q;
    renderQuote();
  }

  function figure(label, value, cls = "", id = undefined) {
    return el("div", { class: "col-6" },
      el("div", { class: "small text-body-secondary", text: label }),
      el("div", { class: `mono ${cls}`, text: value, id }));
  }

  function renderQuote() {
    const box = $("market-quote");
    if (!box || !market.code) return;
    const q = market.live;
    const last = market.bars.length ? market.bars[market.bars.length - 1] : null;
    const price = q ? q.last : last ? last.close : null;
    const base = q ? q.pre_close : last ? last.pre_close : null;
    const moved = change(price, base);
    const up = q && q.limit_up != null ? q.limit_up : market.reference ? market.reference.limit_up : null;
    const down = q && q.limit_down != null ? q.limit_down : market.reference ? market.reference.limit_down : null;
    const priceCls = moved ? moved.cls : "";
    const rows = [
      el("div", { class: "d-flex justify-content-between align-items-baseline" },
        el("span", { class: "small text-body-secondary", text: t(q ? "market.quote.last" : "market.quote.close") }),
        el("span", { class: `fs-4 mono ${priceCls}`, id: "market-last", text: price ? groupDigits(price) : "—" })),
      el("div", { class: "row g-1 mb-1" },
        figure(t("market.quote.change"), moved ? moved.text : "—", priceCls, "market-change"),
        figure(t("market.quote.pct"), moved ? moved.pct : "—", priceCls, "market-pct"),
        figure(t("market.quote.open"), fmt(q ? q.open : last && last.open)),
        figure(t("market.quote.high"), fmt(q ? q.high : last && last.high)),
        figure(t("market.quote.low"), fmt(q ? q.low : last && last.low)),
        figure(t("market.quote.volume"), groupDigits(q ? q.volume : last && last.vol)),
        figure(t("market.quote.limitUp"), fmt(up), "return-up", "market-limit-up"),
        figure(t("market.quote.limitDown"), fmt(down), "return-down", "market-limit-down")),
    ];
    if (q) {
      const level = (side, i) => {
        const item = ((side === "ask" ? q.ask : q.bid) || [])[i - 1];
        const moves = item ? change(item.price, q.pre_close) : null;
        return el("tr", { id: `market-${side}-${i}` },
          el("th", { scope: "row", class: "small fw-normal text-body-secondary", text: t(`market.quote.${side}`, { n: i }) }),
          el("td", { class: `text-end mono ${moves ? moves.cls : ""}`, text: item ? item.price : "—" }),
          el("td", { class: "text-end mono small", text: item ? groupDigits(item.volume) : "" }));
      };
      const ladder = [];
      for (let i = 5; i >= 1; i -= 1) ladder.push(level("ask", i));
      for (let i = 1; i <= 5; i += 1) ladder.push(level("bid", i));
      rows.push(el("div", { class: "table-responsive" },
        el("table", { class: "table table-sm mb-1 market-ladder" }, el("tbody", {}, ...ladder))));
      rows.push(el("div", { class: "small text-body-secondary", text: t("market.quote.live", { time: SHANGHAI_TIME.format(new Date(q.time)) }) }));
    } else if (last) {
      rows.push(el("div", { class: "small text-body-secondary", text: t("market.quote.notLive", { day: last.trade_date }) }));
    }
    if (market.quoteError) rows.push(el("div", { class: "small text-danger", role: "alert", text: t("market.quote.failed", { reason: market.quoteError }) }));
    box.replaceChildren(...rows);
    $("market-headline").textContent = price ? `${price} ${moved ? `${moved.text} ${moved.pct}` : ""}`.trim() : "";
    $("market-headline").className = `mono ${priceCls}`;
  }

  // The socket's quotes of the shown code, through the registry shared with the desk (app.js's watch): the desk's
  // codes stay subscribed whatever this page shows, and this page's whatever the desk drops.
  function subscribe() {
    window.LH.watch("market", market.code && !$("market-view").classList.contains("d-none") ? [market.code] : []);
  }

  // --- the trade button: the desk's ticket with this code -------------------------------------------------------------

  function openTicket() {
    const input = $("order-ts-code");
    if (!input || !market.code) return;
    input.value = market.code;
    input.dispatchEvent(new Event("input", { bubbles: true }));
    const price = market.live ? market.live.last : null;
    if (price && $("order-price") && !$("order-price").disabled) {
      $("order-price").value = price;
      $("order-price").dispatchEvent(new Event("input", { bubbles: true }));
    }
    location.hash = "#desk";
  }

  // --- the chart -----------------------------------------------------------------------------------------------------

  function chartError(message) {
    const box = $("market-chart-error");
    if (!box) return;
    box.textContent = message || "";
    show(box, !!message);
  }

  function drawSoon() {
    if (market.drawPending) return;
    market.drawPending = true;
    requestAnimationFrame(() => {
      market.drawPending = false;
      draw();
    });
  }

  const num = (text) => (text === null || text === undefined ? null : Number(text));

  async function draw() {
    let echarts;
    try {
      echarts = await window.LH.loadEcharts();
    } catch (err) {
      chartError(t("market.chart.failed", { reason: err.message }));
      return;
    }
    const node = $("market-chart");
    if (!node || !market.code || $("market-view").classList.contains("d-none")) return;
    if (market.mode === "day" && market.loading) return; // drawn when the bars are in
    performance.mark("market:draw-start");
    const base = market.mode === "day" ? dailyBase() : null;
    // In place when only the indicators changed: the same charts, the same bars' arrays. The main chart is given its
    // new overlay series only (those it shows are kept as built: a series given is built again from its 2,600 bars,
    // a third of a redraw), or the overlays that stay; a pane added or removed is a chart of its own created or
    // disposed, the candles untouched. The zoom stays where it is.
    const option = market.mode === "minute" ? minuteOption() : dailyOption(base);
    const height = `${option.height}px`;
    const resized = node.style.height !== height;
    // (a new height, the window having crossed the phone width: the grids change with it, drawn afresh)
    const inPlace = !!(market.chart && base && base.n && market.drawnBase === base && !resized);
    node.style.height = height;
    if (!market.chart) {
      market.chart = echarts.init(node, null, { renderer: "canvas" });
      watchChart(market.chart, null);
    }
    market.waiting = { charts: new Set(), open: true };
    const updated = market.waiting.charts; // (before each update: a chart may finish drawing within it)
    performance.mark("market:option-built");
    const ids = option.chart.series ? option.chart.series.map((s) => s.id) : [];
    if (inPlace) {
      const same = ids.length === market.drawnIds.length && market.drawnIds.every((id, i) => ids[i] === id);
      const added = !same && market.drawnIds.length < ids.length && market.drawnIds.every((id, i) => ids[i] === id);
      if (!same) {
        updated.add(market.chart);
        const { series, legend } = option.chart;
        if (added) market.chart.setOption({ series: series.slice(market.drawnIds.length), legend });
        else market.chart.setOption({ series, legend }, { replaceMerge: ["series"] });
      }
      node.dataset.redraw = same ? "panes" : added ? "added" : "replaced";
    } else {
      market.zoom = null;
      disposePanes();
      updated.add(market.chart);
      if (resized) market.chart.resize();
      market.chart.setOption(option.chart, { notMerge: true });
      node.dataset.redraw = "whole";
    }
    if (base) drawPanes(echarts, base, option.panes || [], updated);
    node.dataset.panes = String(market.panes.size);
    market.drawnBase = base;
    market.drawnIds = ids;
    market.waiting.open = false;
    if (!updated.size) requestAnimationFrame(() => performance.mark("market:chart-drawn"));
    performance.mark("market:option-set");
  }

  // A chart's drawing finished, its zoom and its pointer followed by the others: `pane` is null for the main chart.
  function watchChart(chart, pane) {
    // `market:chart-drawn` once every chart a redraw updated has finished drawing (at the next frame when none is
    // left to finish as the redraw ends: a pane removed is gone from the page then)
    chart.on("finished", () => {
      const waiting = market.waiting;
      if (!waiting || !waiting.charts.delete(chart) || waiting.open || waiting.charts.size) return;
      market.waiting = null;
      performance.mark("market:chart-drawn");
    });
    chart.on("datazoom", (event) => {
      const z = event.batch ? event.batch[0] : event;
      market.zoom = z.startValue !== undefined ? { startValue: z.startValue, endValue: z.endValue } : { start: z.start, end: z.end };
      for (const other of otherCharts(chart)) {
        other.dispatchAction({ type: "dataZoom", dataZoomId: other === market.chart ? "zoom-slider" : "zoom-inside", ...market.zoom }, true);
      }
    });
    chart.on("updateAxisPointer", (event) => {
      // the pointer's day, followed by the others: on the candles at the day's close, in a pane half-way up
      const x = (event.axesInfo || []).find((a) => a.axisDim === "x");
      for (const other of otherCharts(chart)) {
        if (!x) {
          other.dispatchAction({ type: "updateAxisPointer", currTrigger: "leave" }, true);
          continue;
        }
        const bar = market.bars[x.value];
        const [px, py] = other === market.chart && bar
          ? other.convertToPixel({ xAxisIndex: 0, yAxisIndex: 0 }, [x.value, num(bar.close)])
          : [other.convertToPixel({ xAxisIndex: 0 }, x.value), PANE_TOP + PANE_H / 2];
        other.dispatchAction({ type: "updateAxisPointer", currTrigger: "mousemove", x: px, y: py }, true);
      }
    });
    if (pane) pane.chart = chart;
  }

  function otherCharts(chart) {
    const all = [market.chart, ...[...market.panes.values()].map((p) => p.chart)];
    return all.filter((c) => c && c !== chart);
  }

  // The panes of `panes` ({key, label, series}, in the order chosen): those not shown created (each its own chart,
  // placed before the next one shown), those shown but not chosen any more disposed; the charts drawn go to `drawn`.
  function drawPanes(echarts, base, panes, drawn) {
    const keys = new Set(panes.map((p) => p.key));
    for (const [key, pane] of market.panes) {
      if (keys.has(key)) continue;
      pane.chart.dispose();
      pane.node.remove();
      market.panes.delete(key);
    }
    panes.forEach((p, i) => {
      if (market.panes.has(p.key)) return;
      const node = el("div", { class: "market-pane", "data-pane": p.key, role: "img", "aria-label": p.label });
      node.style.height = `${PANE_BOX}px`;
      const next = panes.slice(i + 1).map((q) => market.panes.get(q.key)).find(Boolean);
      $("market-panes").insertBefore(node, next ? next.node : null);
      const pane = { key: p.key, node, chart: null };
      market.panes.set(p.key, pane);
      watchChart(echarts.init(node, null, { renderer: "canvas" }), pane);
      drawn.add(pane.chart);
      pane.chart.setOption(paneOption(base, p));
    });
  }

  function disposePanes() {
    for (const pane of market.panes.values()) {
      pane.chart.dispose();
      pane.node.remove();
    }
    market.panes.clear();
  }

  function resizeCharts() {
    if (market.chart) market.chart.resize();
    for (const pane of market.panes.values()) pane.chart.resize();
  }

  function clearCharts() {
    disposePanes();
    if (market.chart) market.chart.clear();
    market.drawnIds = [];
    const node = $("market-chart");
    if (node) node.dataset.panes = "0";
  }

  // One pane's chart: the indicator's series over the bars' days, its own legend and y axis, the x axis lined up
  // under the main chart's (same left and right), the zoom on the window the main chart shows.
  function paneOption(base, pane) {
    const n = base.n;
    const zoom = market.zoom || { startValue: Math.max(0, n - VISIBLE_BARS), endValue: n - 1 };
    return {
      animation: false,
      legend: { data: [...new Set(pane.series.map((s) => s.name))], top: 0, left: 64, textStyle: { fontSize: 10 }, itemHeight: 8 },
      grid: [paneGrid("pane", PANE_TOP, PANE_H)],
      xAxis: [dayAxis("x-pane", "pane", base.dates, false)],
      yAxis: [{ id: "y-pane", scale: true, splitNumber: 2, axisLabel: { fontSize: 9 } }], // named by its legend
      // a vertical line (the day), not a cross: the pointer is often the candles' one, followed here
      tooltip: { trigger: "axis", renderMode: "richText", axisPointer: { type: "line" }, formatter: (params) => paneTooltipText(params) },
      dataZoom: [{ id: "zoom-inside", type: "inside", ...zoom }],
      series: pane.series,
    };
  }

  function paneTooltipText(params) {
    const list = Array.isArray(params) ? params : [params];
    if (!list.length) return "";
    const day = market.bars[list[0].dataIndex];
    const values = list.filter((p) => p.value !== null && p.value !== undefined).map((p) => `${p.seriesName} ${Number(p.value).toFixed(3)}`);
    return [day ? day.trade_date : "", ...values].join("\n");
  }

  // A daily chart's x axis (the bars' days), its dates and pointer label shown under the lowest grid only.
  function dayAxis(id, gridId, dates, labelled) {
    return {
      id, gridId, type: "category", data: dates, boundaryGap: true, axisLine: { onZero: false },
      axisLabel: { show: labelled, fontSize: 10 }, axisTick: { show: false }, splitLine: { show: false },
      axisPointer: { label: { show: labelled } },
    };
  }

  function paneGrid(id, top, height) {
    return { id, left: 64, right: 16, top, height };
  }

  // What the daily chart draws from the bars, limit days and trades, worked out once per load (and language): the
  // candles, the volume, the marks. An indicator change reuses it as it is.
  function dailyBase() {
    if (market.base) return market.base;
    const bars = market.bars;
    const n = bars.length;
    const dates = bars.map((b) => b.trade_date);
    const index = new Map(dates.map((d, i) => [d, i]));
    const candles = bars.map((b) => [num(b.open), num(b.close), num(b.low), num(b.high)]);
    // Volume as two plain series (up days red, down days green): per-bar style objects would cost the large mode.
    const rising = bars.map((b) => toFen(b.close) >= toFen(b.open));
    const limits = limitMarks(index);
    const tradePoints = tradeMarks(index);
    const series = [
      {
        id: "k", name: "K", type: "candlestick", xAxisId: "x-main", yAxisId: "y-main", data: candles, large: true, largeThreshold: LARGE_FROM,
        itemStyle: { color: UP, color0: DOWN, borderColor: UP, borderColor0: DOWN },
        markPoint: { symbolSize: 30, label: { fontSize: 9 }, data: limits },
      },
      {
        id: "vol-up", name: t("market.volume"), type: "bar", xAxisId: "x-volume", yAxisId: "y-volume", large: true, largeThreshold: LARGE_FROM, color: UP, barGap: "-100%",
        data: bars.map((b, i) => (rising[i] ? b.vol : null)),
      },
      {
        id: "vol-down", name: t("market.volume"), type: "bar", xAxisId: "x-volume", yAxisId: "y-volume", large: true, largeThreshold: LARGE_FROM, color: DOWN, barGap: "-100%",
        data: bars.map((b, i) => (rising[i] ? null : b.vol)),
      },
    ];
    if (tradePoints.length) series.push({
      id: "trades", name: "trades", type: "scatter", xAxisId: "x-main", yAxisId: "y-main", data: tradePoints, symbolSize: 11, z: 5,
    });
    market.base = { n, dates, series, limits: limits.length, trades: tradePoints.length };
    return market.base;
  }

  // One chosen indicator's series, built once per fetched answer (aligned to the bars' dates), with ids that stay the
  // same while it is shown; colours are given at drawing (they follow the order of the chosen ones).
  function indicatorSeries(key, got, dates) {
    if (got.drawn && got.drawnDates === dates) return got.drawn;
    const s = spec(key);
    const pane = s.place === "pane";
    const x = pane ? "x-pane" : "x-main";
    const y = pane ? "y-pane" : "y-main";
    const drawn = [];
    got.items.forEach((item, i) => {
      const suffix = Object.values(item.params || {}).join(",");
      for (const [output, values] of Object.entries(item.outputs)) {
        const label = !pane && output === "real" ? `${item.name}${suffix}` : `${s.label}${suffix ? `(${suffix})` : ""} ${output}`;
        const aligned = alignTo(dates, got.dates, values);
        const id = `ind-${key}-${i}-${output}`;
        if (item.name === "MACD_CN" && output === "macd") {
          for (const [colour, side, keep] of [[UP, "up", (v) => v >= 0], [DOWN, "down", (v) => v < 0]]) {
            drawn.push({
              id: `${id}-${side}`, name: `MACD ${output}`, type: "bar", xAxisId: x, yAxisId: y, large: true, largeThreshold: LARGE_FROM, color: colour, barGap: "-100%",
              data: aligned.map((v) => (v !== null && keep(v) ? v : null)),
            });
          }
        } else {
          drawn.push({
            id, name: label, type: "line", xAxisId: x, yAxisId: y, data: aligned, showSymbol: false, connectNulls: false,
            lineStyle: { width: 1 }, emphasis: { disabled: true }, line: true,
          });
        }
      }
    });
    got.drawn = drawn;
    got.drawnDates = dates;
    return drawn;
  }

  // The main chart (candles, volume, the overlays) and the panes ({key, label, series}) in the order chosen. Line
  // colours follow the order chosen: the overlays' in the main chart, each pane's its own.
  function dailyOption(base) {
    const n = base.n;
    const node = $("market-chart");
    node.dataset.candles = String(n);
    node.dataset.mode = "day";
    if (!n) {
      $("market-chart-note").textContent = t("market.chart.empty");
      return { height: 120, chart: { title: { text: t("market.chart.empty"), left: "center", top: "middle", textStyle: { fontSize: 13 } } } };
    }
    const phone = window.innerWidth < 576;
    const mainH = phone ? 220 : 300;
    const volH = 70;
    const gap = 28;
    const grids = [paneGrid("main", 24, mainH), paneGrid("volume", 24 + mainH + gap, volH)];
    const xIds = ["x-main", "x-volume"];
    const yAxes = [
      { id: "y-main", gridId: "main", scale: true, splitNumber: 4, axisLabel: { fontSize: 10 } },
      { id: "y-volume", gridId: "volume", scale: true, splitNumber: 2, name: t("market.volume"), nameGap: 6, nameTextStyle: { fontSize: 10, align: "left" }, axisLabel: { show: false } },
    ];
    const series = [...base.series];
    const legend = [];
    const panes = [];
    let colour = 0;
    for (const key of market.chosen) {
      const got = market.series.get(seriesKey(key));
      if (!got) continue;
      const s = spec(key);
      const pane = s.place === "pane" ? { key, label: s.label, series: [] } : null;
      let paneColour = 0;
      for (const item of indicatorSeries(key, got, base.dates)) {
        const { line, ...drawn } = item;
        if (pane) {
          pane.series.push(line ? { ...drawn, color: LINE_COLOURS[paneColour++ % LINE_COLOURS.length] } : drawn);
          continue;
        }
        series.push(line ? { ...drawn, color: LINE_COLOURS[colour++ % LINE_COLOURS.length] } : drawn);
        if (!legend.includes(drawn.name)) legend.push(drawn.name);
      }
      if (pane) panes.push(pane);
    }
    node.dataset.trades = String(base.trades);
    node.dataset.limitDays = String(base.limits);
    const xAxes = xIds.map((id, i) => dayAxis(id, grids[i].id, base.dates, i === 1));
    const extra = [];
    if (market.limitDays.length) extra.push(`${t("market.limit.up")}/${t("market.limit.down")} ${market.limitDays.length}`);
    if (market.trades.length) extra.push(t("market.trades.count", { n: market.trades.length }));
    const countText = t("market.chart.count", { n: groupDigits(String(n)), from: base.dates[0], to: base.dates[n - 1] });
    $("market-chart-note").textContent = [countText, ...extra].join(" · ");
    return {
      height: 24 + mainH + gap + volH + gap + 36,
      panes,
      chart: {
        grid: grids,
        xAxis: xAxes,
        yAxis: yAxes,
        series,
        animation: false,
        legend: { data: legend, top: 0, left: 64, textStyle: { fontSize: 10 }, itemHeight: 8 },
        axisPointer: { link: [{ xAxisIndex: "all" }] },
        // Plain-text tooltips: the page's policy refuses the inline styles of HTML ones.
        tooltip: { trigger: "axis", renderMode: "richText", axisPointer: { type: "cross" }, formatter: (params) => tooltipText(params) },
        dataZoom: [
          { id: "zoom-inside", type: "inside", xAxisId: xIds, startValue: Math.max(0, n - VISIBLE_BARS), endValue: n - 1 },
          { id: "zoom-slider", type: "slider", xAxisId: xIds, height: 16, bottom: 4, startValue: Math.max(0, n - VISIBLE_BARS), endValue: n - 1 },
        ],
      },
    };
  }

  function tooltipText(params) {
    const list = Array.isArray(params) ? params : [params];
    const at = list.length ? list[0].dataIndex : null;
    if (market.mode === "day") {
      const b = market.bars[at];
      if (!b) return "";
      return t("market.tooltip", { date: b.trade_date, open: b.open, high: b.high, low: b.low, close: b.close, vol: groupDigits(b.vol) });
    }
    const b = market.minute && market.minute.bars[at];
    if (!b) return "";
    return t("market.tooltip", { date: b.minute, open: b.open, high: b.high, low: b.low, close: b.close, vol: groupDigits(b.volume) });
  }

  function alignTo(dates, seriesDates, values) {
    if (seriesDates.length === dates.length && seriesDates[0] === dates[0]) return values;
    const at = new Map(seriesDates.map((d, i) => [d, i]));
    return dates.map((d) => (at.has(d) ? values[at.get(d)] : null));
  }

  function limitMarks(index) {
    const marks = [];
    for (const day of market.limitDays) {
      const i = index.get(day.trade_date);
      if (i === undefined) continue;
      const bar = market.bars[i];
      const up = day.hit === "up";
      marks.push({
        name: up ? t("market.limit.up") : t("market.limit.down"),
        coord: [day.trade_date, num(up ? bar.high : bar.low)],
        value: up ? t("market.limit.up") : t("market.limit.down"),
        symbol: "pin",
        symbolRotate: up ? 0 : 180,
        itemStyle: { color: up ? UP : DOWN },
        label: { rotate: 0, offset: up ? [0, 0] : [0, 2] },
      });
    }
    return marks;
  }

  function tradeMarks(index) {
    const points = [];
    for (const tr of market.trades) {
      const day = SHANGHAI_DAY.format(new Date(tr.traded_at));
      if (!index.has(day)) continue;
      const buy = tr.side === "buy";
      points.push({
        value: [day, num(tr.price)],
        symbol: "triangle",
        symbolRotate: buy ? 0 : 180,
        itemStyle: { color: buy ? UP : DOWN, borderColor: "#212529", borderWidth: 1 },
        name: `${t(buy ? "market.trade.buy" : "market.trade.sell")} ${tr.qty} @ ${tr.price}`,
      });
    }
    return points;
  }

  function minuteOption() {
    const node = $("market-chart");
    node.dataset.mode = "minute";
    const bars = (market.minute && market.minute.bars) || [];
    node.dataset.candles = String(bars.length);
    if (!bars.length) {
      $("market-chart-note").textContent = market.minute ? t("market.minute.none") : t("market.chart.loading");
      return { height: 120, chart: { title: { text: market.minute ? t("market.minute.none") : "", left: "center", top: "middle", textStyle: { fontSize: 13 } } } };
    }
    $("market-chart-note").textContent = t("market.minute.count", { day: market.minute.day, n: bars.length });
    const labels = bars.map((b) => SHANGHAI_TIME.format(new Date(b.minute)).slice(0, 5));
    return {
      height: 380,
      chart: {
        animation: false,
        grid: [paneGrid("minute", 16, 230), paneGrid("minute-volume", 274, 70)],
        xAxis: [0, 1].map((i) => ({ type: "category", gridIndex: i, data: labels, axisLabel: { show: i === 1, fontSize: 10 } })),
        yAxis: [{ gridIndex: 0, scale: true }, { gridIndex: 1, scale: true, axisLabel: { show: false } }],
        axisPointer: { link: [{ xAxisIndex: "all" }] },
        tooltip: { trigger: "axis", renderMode: "richText", formatter: (params) => tooltipText(params) },
        series: [
          { type: "candlestick", data: bars.map((b) => [num(b.open), num(b.close), num(b.low), num(b.high)]), itemStyle: { color: UP, color0: DOWN, borderColor: UP, borderColor0: DOWN } },
          { type: "bar", xAxisIndex: 1, yAxisIndex: 1, data: bars.map((b) => ({ value: b.volume, itemStyle: { color: toFen(b.close) >= toFen(b.open) ? UP : DOWN } })) },
        ],
      },
    };
  }

  // --- life cycle -------------------------------------------------------------------------------------------------

  function codeFromHash() {
    const [page, own] = location.hash.replace(/^#/, "").split("/");
    if (page !== "market" || !own) return null;
    const code = decodeURIComponent(own).trim().toUpperCase();
    return /^\d{6}\.(SH|SZ|BJ)$/.test(code) ? code : null;
  }

  // The indicators shown by default, once a session (a user's removing them all is kept).
  function chooseDefaults() {
    if (market.defaulted) return;
    market.defaulted = true;
    market.chosen = [...DEFAULT_INDICATORS];
    renderIndicatorChips();
  }

  window.LHPages = window.LHPages || {};
  window.LHPages.market = {
    start() {
      market.started = true;
      build();
      chooseDefaults();
      loadCatalogue();
    },
    stop() {
      market.started = false;
      market.seq += 1;
      market.chartSeq += 1;
      market.code = null;
      window.LH.watch("market", []);
      market.series.clear();
      market.pending.clear();
      market.base = null;
      market.drawnBase = null;
      market.catalogue.clear();
      market.chosen = [];
      market.defaulted = false;
      disposePanes();
      if (market.chart) {
        market.chart.dispose();
        market.chart = null;
      }
      market.loading = false;
      market.zoom = null;
      market.drawnIds = [];
      market.waiting = null;
      if (market.built) {
        $("market-results").replaceChildren();
        $("market-search").value = "";
        show($("market-chart-card"), false);
        show($("market-quote-card"), false);
        show($("market-pick"), true);
      }
    },
    show() {
      build();
      chooseDefaults(); // (shown before start() when the page is reloaded with a session: the chart has MA at once)
      window.LH.loadEcharts().catch(() => {}); // fetched beside the bars, not after them (a failure shows at drawing)
      const code = codeFromHash();
      if (code && code !== market.code) open(code);
      else if (!code && !market.code) open(null);
      else if (market.code) {
        subscribe(); // back on the page: its code's quotes again, and the quote as it is now
        loadQuote();
        if (market.chart) {
          resizeCharts();
          drawSoon();
        }
      }
    },
    hide() {
      window.LH.watch("market", []); // the desk's codes stay subscribed (the registry counts them apart)
    },
  };

  window.addEventListener("lh:quotes", (event) => {
    for (const q of event.detail || []) onQuote(q);
  });
  window.addEventListener("lh:lang", () => {
    if (!market.built) return;
    fillIndicatorSelect();
    renderIndicatorChips();
    renderQuote();
    market.base = null; // the volume's name and the marks' words: drawn again whole
    if (market.loading) $("market-chart-note").textContent = t("market.chart.loading");
    if (market.code) drawSoon();
  });
  window.addEventListener("resize", resizeCharts);
})();
