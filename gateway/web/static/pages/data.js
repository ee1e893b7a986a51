// The data page (#data): how far the store is (the newest trading day stored in full against the calendar's newest
// trading day whose data is out), the real-time feed (mode, the latest snapshot's age, bridges), the ingest runs with
// their progress (admins), and the quality reports with their findings. Admins start the daily update and a quality
// check from here. Data from /api/v1/data/status, /api/v1/ingest/runs and /api/v1/quality/reports
// (docs/data-ingest.md, docs/data-quality.md, docs/quotes.md). Server data is put on the page as text only.
"use strict";

(() => {
  const REFRESH_MS = 10000;
  const RUNNING_REFRESH_MS = 2000; // while a run is going its progress moves
  const RUNS_LIMIT = 20;
  const REPORTS_LIMIT = 20;
  const FINDINGS_LIMIT = 500;
  const STALE_FEED_S = 60; // a snapshot older than this is shown as stale (the feed sends one about every 3 s)
  const DATE = /^\d{4}-\d{2}-\d{2}$/;

  LHI18n.add({
    zh: {
      "data.title": "数据",
      "data.updated": "更新于 {time}",
      "data.status.title": "数据进度",
      "data.status.complete": "已完整入库至",
      "data.status.latest": "日历最新交易日（数据已发布）",
      "data.status.lag": "落后",
      "data.status.lagDays": "{n} 个交易日",
      "data.status.upToDate": "已是最新",
      "data.status.noData": "尚无完整入库的交易日",
      "data.status.updateAt": "每日更新时间（北京时间）",
      "data.feed.title": "实时行情",
      "data.feed.mode": "行情源",
      "data.feed.latest": "最新快照时间",
      "data.feed.age": "距今",
      "data.feed.ageS": "{s} 秒",
      "data.feed.none": "尚未收到快照",
      "data.feed.stale": "行情已陈旧",
      "data.feed.fresh": "正常",
      "data.feed.bridges": "已连接的行情桥",
      "data.feed.mode.replay": "回放",
      "data.feed.mode.bridge": "QMT 行情桥",
      "data.feed.mode.off": "关闭",
      "data.runs.title": "入库任务",
      "data.runs.adminOnly": "入库任务只有管理员可以查看。",
      "data.runs.empty": "还没有入库任务。",
      "data.runs.update": "运行每日更新",
      "data.runs.started": "已启动任务 {id}",
      "data.col.run": "任务",
      "data.col.kind": "类型",
      "data.col.status": "状态",
      "data.col.progress": "进度",
      "data.col.rows": "行数",
      "data.col.current": "当前",
      "data.col.started": "开始",
      "data.col.finished": "结束",
      "data.col.error": "错误",
      "data.col.created": "时间",
      "data.col.range": "区间",
      "data.col.findings": "问题数",
      "data.col.rule": "规则",
      "data.col.severity": "级别",
      "data.col.code": "代码",
      "data.col.date": "日期",
      "data.col.detail": "详情",
      "data.col.count": "数量",
      "data.kind.backfill": "回补",
      "data.kind.update": "每日更新",
      "data.kind.limits": "涨跌停价",
      "data.kind.import": "导入",
      "data.status.running": "运行中",
      "data.status.succeeded": "成功",
      "data.status.failed": "失败",
      "data.status.interrupted": "中断",
      "data.quality.title": "数据质量报告",
      "data.quality.empty": "还没有质量报告。",
      "data.quality.open": "查看",
      "data.quality.run": "运行质量检查",
      "data.quality.start": "开始日期",
      "data.quality.end": "结束日期",
      "data.quality.badDate": "日期格式 YYYY-MM-DD",
      "data.quality.badRange": "结束日期早于开始日期",
      "data.quality.done": "检查完成：{n} 个问题",
      "data.report.title": "报告 {id}",
      "data.report.summary": "{start} 至 {end} · 共 {total} 个问题，保留 {kept} 个示例",
      "data.report.byRule": "按规则",
      "data.report.noFindings": "没有发现问题。",
      "data.report.filter": "只看规则",
      "data.report.all": "全部",
      "data.report.close": "关闭",
      "data.report.skipped": "未运行：{rules}",
      "data.severity.error": "错误",
      "data.severity.warning": "警告",
      "data.severity.info": "提示",
      "data.form.fix": "请修正标出的字段",
    },
    en: {
      "data.title": "Data",
      "data.updated": "Updated {time}",
      "data.status.title": "How far the store is",
      "data.status.complete": "Stored in full through",
      "data.status.latest": "Calendar's newest trading day (data out)",
      "data.status.lag": "Behind by",
      "data.status.lagDays": "{n} trading days",
      "data.status.upToDate": "Up to date",
      "data.status.noData": "No trading day stored in full yet",
      "data.status.updateAt": "Daily update at (Shanghai time)",
      "data.feed.title": "Real-time feed",
      "data.feed.mode": "Feed",
      "data.feed.latest": "Latest snapshot",
      "data.feed.age": "Age",
      "data.feed.ageS": "{s} s",
      "data.feed.none": "No snapshot received yet",
      "data.feed.stale": "Stale",
      "data.feed.fresh": "Fresh",
      "data.feed.bridges": "Bridges connected",
      "data.feed.mode.replay": "Replay",
      "data.feed.mode.bridge": "QMT bridge",
      "data.feed.mode.off": "Off",
      "data.runs.title": "Ingest runs",
      "data.runs.adminOnly": "Ingest runs are shown to admins only.",
      "data.runs.empty": "No ingest run yet.",
      "data.runs.update": "Run the daily update",
      "data.runs.started": "Run {id} started",
      "data.col.run": "Run",
      "data.col.kind": "Kind",
      "data.col.status": "Status",
      "data.col.progress": "Progress",
      "data.col.rows": "Rows",
      "data.col.current": "Current",
      "data.col.started": "Started",
      "data.col.finished": "Finished",
      "data.col.error": "Error",
      "data.col.created": "Created",
      "data.col.range": "Range",
      "data.col.findings": "Findings",
      "data.col.rule": "Rule",
      "data.col.severity": "Severity",
      "data.col.code": "Code",
      "data.col.date": "Date",
      "data.col.detail": "Detail",
      "data.col.count": "Count",
      "data.kind.backfill": "Backfill",
      "data.kind.update": "Daily update",
      "data.kind.limits": "Price limits",
      "data.kind.import": "Import",
      "data.status.running": "Running",
      "data.status.succeeded": "Succeeded",
      "data.status.failed": "Failed",
      "data.status.interrupted": "Interrupted",
      "data.quality.title": "Quality reports",
      "data.quality.empty": "No quality report yet.",
      "data.quality.open": "Open",
      "data.quality.run": "Run a quality check",
      "data.quality.start": "Start date",
      "data.quality.end": "End date",
      "data.quality.badDate": "A date as YYYY-MM-DD",
      "data.quality.badRange": "The end is before the start",
      "data.quality.done": "Check done: {n} findings",
      "data.report.title": "Report {id}",
      "data.report.summary": "{start} to {end} · {total} findings, {kept} kept as examples",
      "data.report.byRule": "By rule",
      "data.report.noFindings": "No findings.",
      "data.report.filter": "Only rule",
      "data.report.all": "All",
      "data.report.close": "Close",
      "data.report.skipped": "Not run: {rules}",
      "data.severity.error": "Error",
      "data.severity.warning": "Warning",
      "data.severity.info": "Info",
      "data.form.fix": "Fix the marked fields",
    },
  });

  const t = (key, vars) => LHI18n.t(key, vars);
  const L = () => window.LH;
  const isAdmin = () => Boolean(L().state.session) && L().state.session.role === "admin";
  let root = null;
  let timer = null;
  let visible = false;
  let seq = 0;
  let updatedAt = null; // the last refresh that read everything
  let reportSeq = 0;
  const data = { status: null, runs: null, reports: null, report: null, reportRule: "" };

  function word(prefix, value) {
    const key = `${prefix}.${value}`;
    return LHI18n.has(key) ? t(key) : L().fmt(value);
  }

  function tableOf(id, headKeys) {
    const { el } = L();
    return el(
      "div",
      { class: "table-responsive" },
      el(
        "table",
        { class: "table table-sm table-hover align-middle mb-0" },
        el("thead", {}, el("tr", {}, ...headKeys.map((k) => el("th", { "data-i18n": k, text: k ? t(k) : "" })))),
        el("tbody", { id }),
      ),
    );
  }

  function card(id, titleKey, headerExtra, ...body) {
    const { el } = L();
    return el(
      "div",
      { class: "card shadow-sm mb-3", id },
      el("div", { class: "card-header d-flex justify-content-between align-items-center flex-wrap gap-2" },
        el("span", { "data-i18n": titleKey, text: t(titleKey) }), headerExtra),
      el("div", { class: "card-body" }, ...body),
    );
  }

  function dl(...pairs) {
    const { el } = L();
    const items = [];
    for (const [key, id] of pairs) {
      items.push(el("dt", { class: "col-sm-6 fw-normal text-body-secondary", "data-i18n": key, text: t(key) }));
      items.push(el("dd", { class: "col-sm-6 mb-1", id }));
    }
    return el("dl", { class: "row mb-0 small" }, ...items);
  }

  function build() {
    const { el } = L();
    root = document.getElementById("data-view");
    const qualityForm = el(
      "form",
      { class: "row g-2 align-items-end mt-2", id: "data-quality-form", novalidate: "" },
      el("div", { class: "col-sm-4" },
        el("label", { class: "form-label small", for: "data-quality-start", "data-i18n": "data.quality.start", text: t("data.quality.start") }),
        el("input", { class: "form-control", id: "data-quality-start", type: "date" }),
        el("div", { class: "invalid-feedback", id: "data-quality-start-error" })),
      el("div", { class: "col-sm-4" },
        el("label", { class: "form-label small", for: "data-quality-end", "data-i18n": "data.quality.end", text: t("data.quality.end") }),
        el("input", { class: "form-control", id: "data-quality-end", type: "date" }),
        el("div", { class: "invalid-feedback", id: "data-quality-end-error" })),
      el("div", { class: "col-sm-4" },
        el("button", { class: "btn btn-primary w-100", type: "submit", id: "data-quality-submit", "data-i18n": "data.quality.run", text: t("data.quality.run") })),
      el("div", { class: "col-12 small", id: "data-quality-result", role: "status" }),
    );
    root.replaceChildren(
      el(
        "div",
        { class: "d-flex flex-wrap align-items-center gap-2 mb-3" },
        el("h1", { class: "h5 mb-0 me-auto", "data-i18n": "data.title", text: t("data.title") }),
        el("span", { class: "small text-body-secondary", id: "data-updated" }),
        el("button", { class: "btn btn-outline-secondary btn-sm", type: "button", id: "data-refresh", "data-i18n": "common.refresh", text: t("common.refresh") }),
      ),
      el("div", { class: "alert alert-danger d-none", id: "data-error", role: "alert" }),
      el(
        "div",
        { class: "row g-3" },
        el("div", { class: "col-lg-6" },
          card("data-status-card", "data.status.title", null,
            dl(["data.status.complete", "data-complete"], ["data.status.latest", "data-latest"],
              ["data.status.lag", "data-lag"], ["data.status.updateAt", "data-update-at"]))),
        el("div", { class: "col-lg-6" },
          card("data-feed-card", "data.feed.title", null,
            dl(["data.feed.mode", "data-feed-mode"], ["data.feed.latest", "data-feed-latest"],
              ["data.feed.age", "data-feed-age"], ["data.feed.bridges", "data-feed-bridges"]))),
        el("div", { class: "col-12" },
          card("data-runs-card", "data.runs.title",
            el("button", { class: "btn btn-outline-primary btn-sm d-none", type: "button", id: "data-run-update", "data-i18n": "data.runs.update", text: t("data.runs.update") }),
            el("div", { class: "small mb-2", id: "data-runs-result", role: "status" }),
            el("p", { class: "small text-body-secondary d-none mb-0", id: "data-runs-admin-only", "data-i18n": "data.runs.adminOnly", text: t("data.runs.adminOnly") }),
            el("div", { id: "data-runs-box" },
              tableOf("data-runs", ["data.col.run", "data.col.kind", "data.col.status", "data.col.progress", "data.col.rows", "data.col.current", "data.col.started", "data.col.finished", "data.col.error"])))),
        el("div", { class: "col-12" },
          card("data-quality-card", "data.quality.title", null,
            tableOf("data-reports", ["data.col.run", "data.col.created", "data.col.range", "data.col.findings", ""]),
            qualityForm,
            el("div", { id: "data-report", class: "mt-3" }))),
      ),
    );
    document.getElementById("data-refresh").addEventListener("click", refresh);
    document.getElementById("data-run-update").addEventListener("click", runUpdate);
    qualityForm.addEventListener("submit", runQuality);
  }

  function applyRole() {
    const { show } = L();
    show(document.getElementById("data-run-update"), isAdmin());
    show(document.getElementById("data-quality-form"), isAdmin());
    show(document.getElementById("data-runs-box"), isAdmin());
    show(document.getElementById("data-runs-admin-only"), !isAdmin());
  }

  // --- loading ----------------------------------------------------------------------------------------------

  async function refresh() {
    if (!L().state.session || !root) return;
    const mine = ++seq;
    const { api, errorText } = L();
    const [status, runs, reports] = await Promise.all([
      api("/api/v1/data/status"),
      isAdmin() ? api(`/api/v1/ingest/runs?limit=${RUNS_LIMIT}`) : Promise.resolve(null),
      api(`/api/v1/quality/reports?limit=${REPORTS_LIMIT}`),
    ]);
    if (mine !== seq || !L().state.session) return;
    const errors = [];
    if (status.ok && status.data && status.data.feed) data.status = status.data;
    else errors.push(`${t("data.status.title")}: ${errorText(status)}`);
    if (runs !== null) {
      if (runs.ok && Array.isArray(runs.data)) data.runs = runs.data;
      else errors.push(`${t("data.runs.title")}: ${errorText(runs)}`);
    }
    if (reports.ok && Array.isArray(reports.data)) data.reports = reports.data;
    else errors.push(`${t("data.quality.title")}: ${errorText(reports)}`);
    const box = document.getElementById("data-error");
    box.textContent = errors.length ? t("common.failed", { reason: errors.join(" · ") }) : "";
    L().show(box, errors.length > 0);
    if (!errors.length) updatedAt = new Date().toISOString();
    render();
    schedule();
  }

  function schedule() {
    clearTimeout(timer);
    timer = null;
    if (!visible) return;
    const running = (data.runs || []).some((r) => r.status === "running");
    timer = setTimeout(refresh, running ? RUNNING_REFRESH_MS : REFRESH_MS);
  }

  function render() {
    if (!root) return;
    document.getElementById("data-updated").textContent = updatedAt ? t("data.updated", { time: L().fmtTime(updatedAt) }) : "";
    renderStatus();
    renderRuns();
    renderReports();
    renderReport();
  }

  function emptyRow(columns, key) {
    return L().emptyRow(columns, t(key)); // app.js's empty-table row, in this page's words
  }

  const MARKET_TIME = new Intl.DateTimeFormat("sv-SE", {
    timeZone: "Asia/Shanghai", year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit",
    second: "2-digit",
  });
  function marketTime(value) {
    const date = new Date(value);
    return Number.isNaN(date.getTime()) ? String(value) : `${MARKET_TIME.format(date)} (UTC+8)`;
  }

  function badge(node, text, cls) {
    const { el } = L();
    node.replaceChildren(el("span", { class: `badge ${cls}`, text }));
  }

  function renderStatus() {
    const { fmt, groupDigits } = L();
    const s = data.status;
    const $ = (id) => document.getElementById(id);
    if (!s) return;
    $("data-complete").textContent = s.complete_through ? s.complete_through : t("data.status.noData");
    $("data-latest").textContent = fmt(s.latest_trading_day);
    const lag = $("data-lag");
    lag.dataset.lag = s.lag_days === null ? "" : String(s.lag_days);
    if (s.lag_days === null) lag.textContent = "—";
    else if (s.lag_days === 0) badge(lag, t("data.status.upToDate"), "text-bg-success");
    else badge(lag, t("data.status.lagDays", { n: groupDigits(s.lag_days) }), "text-bg-warning");
    $("data-update-at").textContent = fmt(s.update_at);
    const feed = s.feed;
    $("data-feed-mode").textContent = word("data.feed.mode", feed.mode);
    // the exchange's time (a replayed 09:30 is 09:30 whatever the browser's zone)
    $("data-feed-latest").textContent = feed.latest_snapshot_at ? marketTime(feed.latest_snapshot_at) : t("data.feed.none");
    const age = $("data-feed-age");
    if (feed.age_s === null || feed.age_s === undefined) age.textContent = "—";
    else {
      const seconds = Number(feed.age_s).toFixed(1);
      const stale = feed.age_s > STALE_FEED_S;
      badge(age, `${t("data.feed.ageS", { s: groupDigits(seconds) })} · ${t(stale ? "data.feed.stale" : "data.feed.fresh")}`,
        stale ? "text-bg-warning" : "text-bg-success");
    }
    $("data-feed-bridges").textContent = feed.bridges.length ? feed.bridges.join(", ") : t("common.none");
  }

  function statusBadge(status) {
    const { el } = L();
    const cls = { running: "text-bg-primary", succeeded: "text-bg-success", failed: "text-bg-danger", interrupted: "text-bg-warning" }[status] || "text-bg-secondary";
    return el("span", { class: `badge ${cls}`, "data-status": status, text: word("data.status", status) });
  }

  function progress(percent) {
    const { el } = L();
    const value = Math.min(Math.max(Number(percent) || 0, 0), 100);
    const bar = el("div", { class: "progress-bar" });
    bar.style.width = `${value}%`;
    return el("div", { class: "d-flex align-items-center gap-2" },
      el("div", { class: "progress flex-grow-1", role: "progressbar", "aria-valuenow": String(value), "aria-valuemin": "0", "aria-valuemax": "100" }, bar),
      el("span", { class: "small text-nowrap", text: `${value.toFixed(2)}%` }));
  }

  function renderRuns() {
    const { el, fmt, fmtTime, groupDigits } = L();
    const body = document.getElementById("data-runs");
    if (!isAdmin()) return body.replaceChildren();
    const runs = data.runs || [];
    body.replaceChildren(...runs.map((r) => el(
      "tr",
      { "data-run": r.run_id },
      el("td", { class: "mono small", text: r.run_id.slice(0, 8), title: r.run_id }),
      el("td", { text: word("data.kind", r.kind) }),
      el("td", {}, statusBadge(r.status)),
      el("td", { class: "run-progress" }, progress(r.percent)),
      el("td", { class: "text-end", text: groupDigits(r.rows) }),
      el("td", { class: "small", text: fmt(r.current) }),
      el("td", { class: "small text-nowrap", text: fmtTime(r.started_at) }),
      el("td", { class: "small text-nowrap", text: fmtTime(r.finished_at) }),
      el("td", { class: "small text-danger text-break", text: r.error || "" }),
    )));
    if (!runs.length) body.append(emptyRow(9, "data.runs.empty"));
  }

  function reportTotal(r) {
    return L().groupDigits(r.findings);
  }

  function renderReports() {
    const { el, fmt, fmtTime } = L();
    const body = document.getElementById("data-reports");
    const reports = data.reports || [];
    body.replaceChildren(...reports.map((r) => el(
      "tr",
      { "data-report": r.run_id, class: data.report && data.report.run_id === r.run_id ? "table-active" : "" },
      el("td", { class: "mono small", text: r.run_id.slice(0, 8), title: r.run_id }),
      el("td", { class: "small text-nowrap", text: fmtTime(r.created_at) }),
      el("td", { class: "small text-nowrap", text: `${fmt(r.start_date)} – ${fmt(r.end_date)}` }),
      el("td", { class: `text-end ${r.findings ? "text-danger fw-semibold" : ""}`, text: reportTotal(r) }),
      el("td", {}, el("button", { class: "btn btn-link btn-sm p-0", type: "button", text: t("data.quality.open"), onclick: () => openReport(r.run_id, "") })),
    )));
    if (!reports.length) body.append(emptyRow(5, "data.quality.empty"));
  }

  async function openReport(runId, rule) {
    const mine = ++reportSeq;
    const query = new URLSearchParams({ limit: String(FINDINGS_LIMIT) });
    if (rule) query.set("rule", rule);
    const result = await L().api(`/api/v1/quality/reports/${encodeURIComponent(runId)}?${query}`);
    if (mine !== reportSeq) return;
    data.reportRule = rule;
    data.report = result.ok && result.data ? result.data : { run_id: runId, error: L().errorText(result) };
    renderReports();
    renderReport();
  }

  function renderReport() {
    const { el, fmt, groupDigits } = L();
    const box = document.getElementById("data-report");
    const r = data.report;
    if (!r) return box.replaceChildren();
    const close = el("button", { class: "btn btn-outline-secondary btn-sm", type: "button", text: t("data.report.close"),
      onclick: () => { data.report = null; renderReports(); renderReport(); } });
    const title = el("div", { class: "d-flex align-items-center gap-2 mb-2" },
      el("h2", { class: "h6 mb-0 me-auto", text: t("data.report.title", { id: r.run_id }) }), close);
    if (r.error) {
      return box.replaceChildren(title, el("div", { class: "text-danger small", text: t("common.failed", { reason: r.error }) }));
    }
    const counts = r.counts || {};
    const ruleRows = Object.entries(counts).filter(([, n]) => n > 0).map(([rule, n]) => el(
      "tr", { "data-rule": rule },
      el("td", { class: "mono small", text: rule }),
      el("td", { class: "text-end", text: groupDigits(n) }),
    ));
    const filter = el("select", { class: "form-select form-select-sm w-auto", id: "data-report-rule", "aria-label": t("data.report.filter") },
      el("option", { value: "", text: t("data.report.all") }),
      ...(r.rules || []).map((rule) => el("option", { value: rule, text: rule })));
    filter.value = data.reportRule || "";
    filter.addEventListener("change", () => openReport(r.run_id, filter.value));
    const items = r.items || [];
    const findingRows = items.map((f) => el(
      "tr", { "data-finding": f.rule },
      el("td", { class: "mono small", text: f.rule }),
      el("td", { text: word("data.severity", f.severity) }),
      el("td", { class: "mono", text: fmt(f.ts_code) }),
      el("td", { class: "small text-nowrap", text: fmt(f.trade_date) }),
      el("td", { class: "small text-break", text: fmt(f.detail) }),
    ));
    const skipped = r.rules_skipped && Object.keys(r.rules_skipped).length
      ? el("div", { class: "small text-warning", text: t("data.report.skipped", { rules: Object.keys(r.rules_skipped).join(", ") }) })
      : null;
    const head = (keys) => el("thead", {}, el("tr", {}, ...keys.map((k) => el("th", { text: t(k) }))));
    const parts = [
      title,
      el("div", { class: "small text-body-secondary mb-2", id: "data-report-summary",
        text: t("data.report.summary", { start: fmt(r.start_date), end: fmt(r.end_date), total: groupDigits(r.findings), kept: groupDigits(r.kept) }) }),
      skipped,
      el("div", { class: "row g-3" },
        el("div", { class: "col-md-4" },
          el("div", { class: "small fw-semibold", text: t("data.report.byRule") }),
          el("div", { class: "table-responsive" },
            el("table", { class: "table table-sm mb-0", id: "data-report-counts" }, head(["data.col.rule", "data.col.count"]),
              el("tbody", {}, ...(ruleRows.length ? ruleRows : [emptyRow(2, "data.report.noFindings")]))))),
        el("div", { class: "col-md-8" },
          el("div", { class: "d-flex align-items-center gap-2 mb-1" },
            el("label", { class: "small", for: "data-report-rule", text: t("data.report.filter") }), filter),
          el("div", { class: "table-responsive" },
            el("table", { class: "table table-sm mb-0", id: "data-report-findings" },
              head(["data.col.rule", "data.col.severity", "data.col.code", "data.col.date", "data.col.detail"]),
              el("tbody", {}, ...(findingRows.length ? findingRows : [emptyRow(5, "data.report.noFindings")])))))),
    ];
    box.replaceChildren(...parts.filter(Boolean));
  }

  // --- admin actions ----------------------------------------------------------------------------------------

  function resultLine(node, ok, text) {
    node.className = `small ${ok ? "text-success" : "text-danger"}`;
    node.textContent = text;
  }

  async function runUpdate() {
    const out = document.getElementById("data-runs-result");
    const button = document.getElementById("data-run-update");
    button.disabled = true;
    try {
      const result = await L().api("/api/v1/ingest/update", { method: "POST" });
      if (result.ok && result.data) resultLine(out, true, t("data.runs.started", { id: result.data.run_id }));
      else resultLine(out, false, L().errorText(result));
    } finally {
      button.disabled = false;
    }
    await refresh();
  }

  function markError(id, message) {
    document.getElementById(id).classList.add("is-invalid");
    document.getElementById(`${id}-error`).textContent = message;
  }

  async function runQuality(event) {
    event.preventDefault();
    const out = document.getElementById("data-quality-result");
    const form = document.getElementById("data-quality-form");
    for (const node of form.querySelectorAll(".is-invalid")) node.classList.remove("is-invalid");
    const start = document.getElementById("data-quality-start").value.trim();
    const end = document.getElementById("data-quality-end").value.trim();
    let ok = true;
    if (!DATE.test(start)) { markError("data-quality-start", t("data.quality.badDate")); ok = false; }
    if (!DATE.test(end)) { markError("data-quality-end", t("data.quality.badDate")); ok = false; }
    if (ok && end < start) { markError("data-quality-end", t("data.quality.badRange")); ok = false; }
    if (!ok) return resultLine(out, false, t("data.form.fix"));
    const button = document.getElementById("data-quality-submit");
    button.disabled = true;
    out.textContent = t("common.loading");
    out.className = "small text-body-secondary";
    try {
      const result = await L().api("/api/v1/quality/run", { method: "POST", json: { start, end } });
      if (result.ok && result.data) {
        resultLine(out, true, t("data.quality.done", { n: L().groupDigits(result.data.findings) }));
        await refresh();
        await openReport(result.data.run_id, "");
        return;
      }
      const details = result.data && Array.isArray(result.data.details) ? result.data.details : [];
      for (const d of details) if (d.field === "start" || d.field === "end") markError(`data-quality-${d.field}`, String(d.message));
      resultLine(out, false, L().errorText(result));
    } finally {
      button.disabled = false;
    }
  }

  // --- page life --------------------------------------------------------------------------------------------

  window.LHPages = window.LHPages || {};
  window.LHPages.data = {
    start() {
      if (!root) build();
      applyRole();
    },
    stop() {
      clearTimeout(timer);
      timer = null;
      visible = false;
      seq += 1;
      updatedAt = null;
      reportSeq += 1;
      data.status = data.runs = data.reports = data.report = null;
      data.reportRule = "";
      if (root) {
        root.replaceChildren();
        root = null;
      }
    },
    show() {
      if (!root) build();
      applyRole();
      if (visible) return;
      visible = true;
      refresh();
    },
    hide() {
      visible = false;
      clearTimeout(timer);
      timer = null;
    },
  };
  window.addEventListener("lh:lang", () => {
    if (!root) return;
    LHI18n.apply(root);
    render();
  });
})();
