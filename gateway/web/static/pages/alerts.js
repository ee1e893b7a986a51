// The alerts page (#alerts): the alerts Alertmanager holds now, acknowledging one (a silence on its labels for a
// chosen time, with a comment), the silences with their end, and the history of what fired and resolved.
// API: /api/v1/alerts, /api/v1/alerts/silences, /api/v1/alerts/history (gateway/alerts.py; docs/operations.md,
// "The alerts page"). Everyone reads the alerts of their own account and the platform's (an admin all); a trader
// silences an alert of their own account (sent by fingerprint: the gateway builds the matchers from its labels), an
// admin any; a trader ends their own silences, an admin anyone's.
"use strict";

(() => {
  const REFRESH_MS = 30000;
  const HISTORY_PAGE = 50;
  const MAX_MINUTES = 7 * 24 * 60;
  const DURATIONS = [30, 60, 120, 240, 480, 1440, 4320, 10080]; // minutes offered; any 1..10080 may be typed

  window.LHI18n.add({
    zh: {
      "alerts.title": "告警",
      "alerts.active": "当前告警",
      "alerts.silences": "静默",
      "alerts.history": "告警历史",
      "alerts.updated": "更新于 {time}",
      "alerts.noneActive": "当前没有告警",
      "alerts.noneSilences": "没有生效的静默",
      "alerts.noneHistory": "还没有告警记录",
      "alerts.more": "更早的记录",
      "alerts.col.severity": "级别",
      "alerts.col.since": "开始于",
      "alerts.col.alert": "告警",
      "alerts.col.labels": "标签",
      "alerts.col.state": "状态",
      "alerts.col.matchers": "匹配",
      "alerts.col.until": "结束于",
      "alerts.col.by": "创建人",
      "alerts.col.comment": "说明",
      "alerts.col.time": "时间",
      "alerts.col.status": "变化",
      "alerts.state.active": "告警中",
      "alerts.state.silenced": "已静默",
      "alerts.state.inhibited": "已抑制",
      "alerts.state.unprocessed": "处理中",
      "alerts.silence.state.active": "生效",
      "alerts.silence.state.pending": "待生效",
      "alerts.silence.state.expired": "已结束",
      "alerts.status.firing": "触发",
      "alerts.status.resolved": "恢复",
      "alerts.severity.critical": "严重",
      "alerts.severity.warning": "警告",
      "alerts.severity.info": "提示",
      "alerts.ack": "静默",
      "alerts.expire": "结束静默",
      "alerts.form.title": "静默告警：{name}",
      "alerts.form.matchers": "将静默带有以下全部标签的告警：",
      "alerts.form.duration": "时长（分钟）",
      "alerts.form.preset": "常用时长",
      "alerts.form.comment": "说明（必填）",
      "alerts.form.commentHint": "为什么静默，例如：正在处理",
      "alerts.form.submit": "确认静默",
      "alerts.form.cancel": "取消",
      "alerts.form.done": "已静默 {name}，至 {until}",
      "alerts.form.expired": "静默已结束",
      "alerts.minutes": "{n} 分钟",
      "alerts.hours": "{n} 小时",
      "alerts.days": "{n} 天",
      "alerts.err.duration": "请输入 1 到 {max} 之间的整数分钟",
      "alerts.err.comment": "请填写说明",
      "alerts.err.alertmanager_not_configured": "未配置 Alertmanager（LH_ALERTMANAGER_URL）：本部署没有当前告警和静默，只有历史。",
      "alerts.err.alertmanager_unavailable": "Alertmanager 无响应，请稍后再试",
      "alerts.err.not_your_silence": "这是别人创建的静默：只有创建人或管理员可以结束",
      "alerts.err.silence_expired": "这个静默已经结束",
      "alerts.err.silence_not_found": "Alertmanager 中没有这个静默",
      "alerts.err.forbidden": "权限不足",
      "alerts.err.platform_alert": "这是平台告警（不属于任何账户）：只有管理员可以静默",
      "alerts.err.alert_not_found": "这个告警已不在 Alertmanager 中（可能已恢复），请刷新",
      "alerts.readOnly": "只读：观察员不能静默告警",
    },
    en: {
      "alerts.title": "Alerts",
      "alerts.active": "Active alerts",
      "alerts.silences": "Silences",
      "alerts.history": "Alert history",
      "alerts.updated": "Updated at {time}",
      "alerts.noneActive": "No active alerts",
      "alerts.noneSilences": "No active silences",
      "alerts.noneHistory": "No alerts recorded yet",
      "alerts.more": "Older entries",
      "alerts.col.severity": "Severity",
      "alerts.col.since": "Since",
      "alerts.col.alert": "Alert",
      "alerts.col.labels": "Labels",
      "alerts.col.state": "State",
      "alerts.col.matchers": "Matchers",
      "alerts.col.until": "Ends",
      "alerts.col.by": "Created by",
      "alerts.col.comment": "Comment",
      "alerts.col.time": "Time",
      "alerts.col.status": "Change",
      "alerts.state.active": "Firing",
      "alerts.state.silenced": "Silenced",
      "alerts.state.inhibited": "Inhibited",
      "alerts.state.unprocessed": "Processing",
      "alerts.silence.state.active": "Active",
      "alerts.silence.state.pending": "Pending",
      "alerts.silence.state.expired": "Ended",
      "alerts.status.firing": "Fired",
      "alerts.status.resolved": "Resolved",
      "alerts.severity.critical": "Critical",
      "alerts.severity.warning": "Warning",
      "alerts.severity.info": "Info",
      "alerts.ack": "Silence",
      "alerts.expire": "End silence",
      "alerts.form.title": "Silence alert: {name}",
      "alerts.form.matchers": "Silences the alerts that have all of these labels:",
      "alerts.form.duration": "Duration (minutes)",
      "alerts.form.preset": "Common durations",
      "alerts.form.comment": "Comment (required)",
      "alerts.form.commentHint": "Why, e.g. looking into it",
      "alerts.form.submit": "Silence",
      "alerts.form.cancel": "Cancel",
      "alerts.form.done": "Silenced {name} until {until}",
      "alerts.form.expired": "Silence ended",
      "alerts.minutes": "{n} min",
      "alerts.hours": "{n} h",
      "alerts.days": "{n} d",
      "alerts.err.duration": "Enter whole minutes from 1 to {max}",
      "alerts.err.comment": "Say why the alert is silenced",
      "alerts.err.alertmanager_not_configured": "No Alertmanager is configured (LH_ALERTMANAGER_URL): this deployment has no active alerts or silences, only the history.",
      "alerts.err.alertmanager_unavailable": "Alertmanager did not answer; try again later",
      "alerts.err.not_your_silence": "Another user created this silence: only they or an admin can end it",
      "alerts.err.silence_expired": "This silence has already ended",
      "alerts.err.silence_not_found": "Alertmanager has no such silence",
      "alerts.err.forbidden": "Your role cannot do this",
      "alerts.err.platform_alert": "This is a platform alert (of no account): only an admin can silence it",
      "alerts.err.alert_not_found": "Alertmanager no longer holds this alert (it may have resolved); refresh",
      "alerts.readOnly": "Read only: viewers cannot silence alerts",
    },
  });

  const page = {
    built: false,
    visible: false,
    timer: null,
    alerts: null, // the last list read, or null
    silences: null,
    history: [],
    nextBeforeId: null,
    amError: null, // the error code of the last Alertmanager read, or null
    target: null, // the alert the silence form is for
    seq: 0,
    failures: [], // the API answers of the last refresh that failed
    updatedAt: null, // when the last refresh fully succeeded (null after a failed one)
    actionFailure: null, // a refused expiry's answer
    done: null, // the last action's outcome: {key, vars}
  };

  const t = (key, vars) => window.LHI18n.t(key, vars);
  const LH = () => window.LH;
  const node = (id) => document.getElementById(id);

  function session() {
    return LH().state.session;
  }

  function maySilenceAny() {
    const s = session();
    return Boolean(s) && (s.role === "trader" || s.role === "admin");
  }

  // An admin silences any alert; a trader only one of their own account (the gateway refuses the others).
  function canSilence(alert) {
    const s = session();
    if (!maySilenceAny()) return false;
    return s.role === "admin" || (Boolean(alert.labels.account) && alert.labels.account === s.accountId);
  }

  function mayExpire(silence) {
    const s = session();
    return Boolean(s) && (s.role === "admin" || (s.role === "trader" && silence.created_by === s.username));
  }

  function errorMessage(result) {
    const code = result.data && result.data.code;
    const key = `alerts.err.${code}`;
    if (code && window.LHI18n.has(key)) return t(key);
    return LH().errorText(result);
  }

  function durationLabel(minutes) {
    if (minutes % 1440 === 0) return t("alerts.days", { n: minutes / 1440 });
    if (minutes % 60 === 0) return t("alerts.hours", { n: minutes / 60 });
    return t("alerts.minutes", { n: minutes });
  }

  function labelsText(labels) {
    return Object.entries(labels || {})
      .filter(([name]) => name !== "alertname")
      .map(([name, value]) => `${name}=${value}`)
      .join(", ");
  }

  function severityBadge(severity) {
    const cls = { critical: "text-bg-danger", warning: "text-bg-warning", info: "text-bg-info" }[severity] || "text-bg-secondary";
    const key = `alerts.severity.${severity}`;
    return LH().el("span", { class: `badge ${cls}`, "data-severity": severity || "", text: window.LHI18n.has(key) ? t(key) : LH().fmt(severity) });
  }

  function card(title, bodyId, extra) {
    const { el } = LH();
    return el(
      "div",
      { class: "card mb-3", id: `${bodyId}-card` },
      el("div", { class: "card-header d-flex align-items-center gap-2" }, el("span", { class: "fw-semibold", "data-i18n": title, text: t(title) }), extra || null),
      el("div", { class: "card-body p-0", id: bodyId }),
    );
  }

  function table(headKeys, bodyId) {
    const { el } = LH();
    return el(
      "div",
      { class: "table-responsive" },
      el(
        "table",
        { class: "table table-sm table-hover mb-0 align-middle" },
        el("thead", {}, el("tr", {}, ...headKeys.map((key) => el("th", { "data-i18n": key || null, text: key ? t(key) : "" })))),
        el("tbody", { id: bodyId }),
      ),
    );
  }

  function build() {
    const { el } = LH();
    const view = node("alerts-view");
    const refresh = el("button", { class: "btn btn-outline-secondary btn-sm ms-auto", type: "button", id: "alerts-refresh", "data-i18n": "common.refresh", text: t("common.refresh"), onclick: () => refresh_() });
    const durationInput = el("input", { class: "form-control", id: "alerts-duration", type: "number", min: "1", max: String(MAX_MINUTES), step: "1", value: "60", "data-field": "duration_minutes", required: "" });
    const preset = el("select", { class: "form-select", id: "alerts-preset", "aria-label": t("alerts.form.preset"), "data-i18n-aria-label": "alerts.form.preset", onchange: (e) => { if (e.target.value) durationInput.value = e.target.value; } });
    const form = el(
      "form",
      { class: "card mb-3 border-primary d-none", id: "alerts-silence-form", novalidate: "", onsubmit: submitSilence },
      el("div", { class: "card-header fw-semibold", id: "alerts-form-title" }),
      el(
        "div",
        { class: "card-body" },
        el("div", { class: "small mb-1", "data-i18n": "alerts.form.matchers", text: t("alerts.form.matchers") }),
        el("div", { class: "small mono mb-3 text-break", id: "alerts-form-matchers" }),
        el(
          "div",
          { class: "row g-2" },
          el("div", { class: "col-12 col-sm-6 col-lg-3" },
            el("label", { class: "form-label small", for: "alerts-duration", "data-i18n": "alerts.form.duration", text: t("alerts.form.duration") }),
            durationInput),
          el("div", { class: "col-12 col-sm-6 col-lg-3" },
            el("label", { class: "form-label small", for: "alerts-preset", "data-i18n": "alerts.form.preset", text: t("alerts.form.preset") }),
            preset),
          el("div", { class: "col-12 col-lg-6" },
            el("label", { class: "form-label small", for: "alerts-comment", "data-i18n": "alerts.form.comment", text: t("alerts.form.comment") }),
            el("input", { class: "form-control", id: "alerts-comment", type: "text", maxlength: "500", "data-field": "comment", placeholder: t("alerts.form.commentHint"), "data-i18n-placeholder": "alerts.form.commentHint" })),
        ),
        el("div", { class: "mt-3 d-flex gap-2" },
          el("button", { class: "btn btn-primary btn-sm", type: "submit", id: "alerts-silence-submit", "data-i18n": "alerts.form.submit", text: t("alerts.form.submit") }),
          el("button", { class: "btn btn-outline-secondary btn-sm", type: "button", "data-i18n": "alerts.form.cancel", text: t("alerts.form.cancel"), onclick: closeForm })),
        el("div", { class: "text-danger small mt-2 d-none", id: "alerts-form-error", role: "alert", "data-field": "matchers" }),
      ),
    );
    view.replaceChildren(
      el("div", { class: "d-flex align-items-center gap-2 mb-2 flex-wrap" },
        el("h2", { class: "h5 mb-0", "data-i18n": "alerts.title", text: t("alerts.title") }),
        el("span", { class: "small text-body-secondary", id: "alerts-status", role: "status" }),
        refresh),
      el("div", { class: "alert alert-danger py-2 small d-none", id: "alerts-error", role: "alert" }),
      el("div", { class: "alert alert-info py-2 small d-none", id: "alerts-notice" }),
      el("div", { class: "alert alert-success py-2 small d-none", id: "alerts-done", role: "status" }),
      el("div", { class: "small text-body-secondary mb-2 d-none", id: "alerts-readonly", "data-i18n": "alerts.readOnly", text: t("alerts.readOnly") }),
      form,
      card("alerts.active", "alerts-active-body"),
      card("alerts.silences", "alerts-silences-body"),
      card("alerts.history", "alerts-history-body"),
    );
    node("alerts-active-body").append(table(["alerts.col.severity", "alerts.col.since", "alerts.col.alert", "alerts.col.labels", "alerts.col.state", ""], "alerts-active"));
    node("alerts-silences-body").append(table(["alerts.col.state", "alerts.col.matchers", "alerts.col.until", "alerts.col.by", "alerts.col.comment", ""], "alerts-silence-rows"));
    node("alerts-history-body").append(
      table(["alerts.col.time", "alerts.col.status", "alerts.col.severity", "alerts.col.alert", "alerts.col.labels"], "alerts-history"),
      el("div", { class: "p-2 d-none", id: "alerts-more-row" },
        el("button", { class: "btn btn-outline-secondary btn-sm", type: "button", id: "alerts-more", "data-i18n": "alerts.more", text: t("alerts.more"), onclick: loadMore })),
    );
    fillPresets();
    page.built = true;
  }

  function fillPresets() {
    const { el } = LH();
    const preset = node("alerts-preset");
    const chosen = preset.value;
    preset.replaceChildren(el("option", { value: "", text: "—" }), ...DURATIONS.map((m) => el("option", { value: String(m), text: durationLabel(m) })));
    preset.value = chosen;
  }

  // --- reading -----------------------------------------------------------------------------------------------------

  async function refresh_() {
    const seq = ++page.seq;
    const { api } = LH();
    page.actionFailure = null;
    const [alerts, silences, history] = await Promise.all([
      api("/api/v1/alerts"),
      api("/api/v1/alerts/silences"),
      api(`/api/v1/alerts/history?limit=${HISTORY_PAGE}`),
    ]);
    if (seq !== page.seq) return; // a newer refresh started meanwhile
    const failures = [];
    const notConfigured = [alerts, silences].some((r) => !r.ok && r.data && r.data.code === "alertmanager_not_configured");
    page.amError = notConfigured ? "alertmanager_not_configured" : null;
    const same = (a, b) => (a.data && a.data.code) === (b.data && b.data.code) && a.status === b.status;
    if (alerts.ok) page.alerts = alerts.data;
    else if (!notConfigured) failures.push(alerts);
    if (silences.ok) page.silences = silences.data;
    else if (!notConfigured && !failures.some((f) => same(f, silences))) failures.push(silences);
    if (history.ok) {
      page.history = history.data.items;
      page.nextBeforeId = history.data.next_before_id;
    } else failures.push(history);
    if (notConfigured) {
      page.alerts = null;
      page.silences = null;
    }
    page.failures = failures;
    page.updatedAt = failures.length ? null : new Date().toISOString();
    renderAll();
  }

  // The refresh's outcome: "updated at" only when every read succeeded, else the failure (and no "updated").
  function renderStatus() {
    const error = node("alerts-error");
    const status = node("alerts-status");
    if (page.failures.length) {
      error.textContent = t("common.failed", { reason: page.failures.map(errorMessage).join("; ") });
      LH().show(error, true);
    } else if (page.actionFailure) {
      error.textContent = errorMessage(page.actionFailure);
      LH().show(error, true);
    } else LH().show(error, false);
    status.textContent = page.updatedAt ? t("alerts.updated", { time: LH().fmtTime(page.updatedAt) }) : "";
    const done = node("alerts-done");
    done.textContent = page.done ? t(page.done.key, page.done.vars) : "";
    LH().show(done, Boolean(page.done));
  }

  async function loadMore() {
    if (!page.nextBeforeId) return;
    const result = await LH().api(`/api/v1/alerts/history?limit=${HISTORY_PAGE}&before_id=${page.nextBeforeId}`);
    if (!result.ok) {
      page.failures = [result];
      page.updatedAt = null;
      renderStatus();
      return;
    }
    page.history = page.history.concat(result.data.items);
    page.nextBeforeId = result.data.next_before_id;
    renderHistory();
  }

  // --- rendering ---------------------------------------------------------------------------------------------------

  function renderAll() {
    const notice = node("alerts-notice");
    notice.textContent = page.amError ? t(`alerts.err.${page.amError}`) : "";
    LH().show(notice, Boolean(page.amError));
    LH().show(node("alerts-readonly"), !maySilenceAny());
    // without an Alertmanager there is nothing to list or silence: only the history
    LH().show(node("alerts-active-body-card"), !page.amError);
    LH().show(node("alerts-silences-body-card"), !page.amError);
    renderActive();
    renderSilences();
    renderHistory();
    renderStatus();
  }

  function emptyRow(columns, key) {
    return LH().emptyRow(columns, t(key)); // app.js's empty-table row, in this page's words
  }

  function alertState(alert) {
    if (alert.silenced_by && alert.silenced_by.length) return "silenced";
    if (alert.inhibited_by && alert.inhibited_by.length) return "inhibited";
    return alert.state === "unprocessed" ? "unprocessed" : "active";
  }

  function renderActive() {
    const { el, fmtTime } = LH();
    const body = node("alerts-active");
    if (page.alerts === null) {
      body.replaceChildren();
      return;
    }
    if (!page.alerts.length) {
      body.replaceChildren(emptyRow(6, "alerts.noneActive"));
      return;
    }
    body.replaceChildren(
      ...page.alerts.map((alert) => {
        const stateKey = alertState(alert);
        const action = canSilence(alert) && stateKey === "active"
          ? el("button", { class: "btn btn-outline-primary btn-sm", type: "button", "data-action": "silence", text: t("alerts.ack"), onclick: () => openForm(alert) })
          : null;
        return el(
          "tr",
          { "data-fingerprint": alert.fingerprint, "data-alertname": alert.alertname },
          el("td", {}, severityBadge(alert.severity)),
          el("td", { class: "text-nowrap small", text: fmtTime(alert.starts_at) }),
          el("td", {}, el("div", { class: "fw-semibold", text: alert.alertname }), el("div", { class: "small", text: alert.summary })),
          el("td", { class: "small mono text-break", text: labelsText(alert.labels) }),
          el("td", { class: "small", "data-state": stateKey, text: t(`alerts.state.${stateKey}`) }),
          el("td", {}, action),
        );
      }),
    );
  }

  function renderSilences() {
    const { el, fmtTime } = LH();
    const body = node("alerts-silence-rows");
    if (page.silences === null) {
      body.replaceChildren();
      return;
    }
    if (!page.silences.length) {
      body.replaceChildren(emptyRow(6, "alerts.noneSilences"));
      return;
    }
    body.replaceChildren(
      ...page.silences.map((silence) => {
        const matchers = silence.matchers.map((m) => `${m.name}${m.is_equal ? "" : "!"}${m.is_regex ? "=~" : "="}${m.value}`).join(", ");
        const action = mayExpire(silence) && silence.state !== "expired"
          ? el("button", { class: "btn btn-outline-danger btn-sm", type: "button", "data-action": "expire", text: t("alerts.expire"), onclick: (e) => expire(silence, e.target) })
          : null;
        const key = `alerts.silence.state.${silence.state}`;
        return el(
          "tr",
          { "data-silence-id": silence.id },
          el("td", { class: "small", text: window.LHI18n.has(key) ? t(key) : silence.state }),
          el("td", { class: "small mono text-break", text: matchers }),
          el("td", { class: "small text-nowrap", text: fmtTime(silence.ends_at) }),
          el("td", { class: "small", text: silence.created_by }),
          el("td", { class: "small text-break", text: silence.comment }),
          el("td", {}, action),
        );
      }),
    );
  }

  function renderHistory() {
    const { el, fmtTime } = LH();
    const body = node("alerts-history");
    if (!page.history.length) body.replaceChildren(emptyRow(5, "alerts.noneHistory"));
    else {
      body.replaceChildren(
        ...page.history.map((entry) => {
          const resolved = entry.status === "resolved";
          return el(
            "tr",
            { "data-status": entry.status },
            el("td", { class: "small text-nowrap", text: fmtTime(resolved ? entry.ends_at : entry.starts_at) }),
            el("td", {}, el("span", { class: `badge ${resolved ? "text-bg-success" : "text-bg-danger"}`, text: t(`alerts.status.${entry.status}`) })),
            el("td", {}, severityBadge(entry.severity)),
            el("td", {}, el("div", { class: "fw-semibold", text: entry.alertname }), el("div", { class: "small", text: entry.summary })),
            el("td", { class: "small mono text-break", text: labelsText(entry.labels) }),
          );
        }),
      );
    }
    LH().show(node("alerts-more-row"), Boolean(page.nextBeforeId));
  }

  // --- silencing ---------------------------------------------------------------------------------------------------

  function clearFormErrors() {
    const form = node("alerts-silence-form");
    for (const input of form.querySelectorAll(".is-invalid")) input.classList.remove("is-invalid");
    for (const feedback of form.querySelectorAll(".invalid-feedback")) feedback.remove();
    const error = node("alerts-form-error");
    error.textContent = "";
    LH().show(error, false);
  }

  function fieldError(inputId, message) {
    const input = node(inputId);
    input.classList.add("is-invalid");
    input.after(LH().el("div", { class: "invalid-feedback", text: message }));
  }

  function renderFormTitle() {
    if (!page.target) return;
    node("alerts-form-title").textContent = t("alerts.form.title", { name: page.target.alertname });
  }

  function openForm(alert) {
    page.target = alert;
    clearFormErrors();
    renderFormTitle();
    node("alerts-form-matchers").textContent = Object.entries(alert.labels).map(([k, v]) => `${k}=${v}`).join(", ");
    node("alerts-duration").value = "60";
    node("alerts-preset").value = "60";
    node("alerts-comment").value = "";
    page.done = null;
    renderStatus();
    LH().show(node("alerts-silence-form"), true);
    node("alerts-comment").focus();
  }

  function closeForm() {
    page.target = null;
    LH().show(node("alerts-silence-form"), false);
  }

  async function submitSilence(event) {
    event.preventDefault();
    if (!page.target) return;
    clearFormErrors();
    const text = node("alerts-duration").value.trim();
    const minutes = /^\d+$/.test(text) ? Number(text) : NaN;
    const comment = node("alerts-comment").value.trim();
    let bad = false;
    if (!(minutes >= 1 && minutes <= MAX_MINUTES)) {
      fieldError("alerts-duration", t("alerts.err.duration", { max: MAX_MINUTES }));
      bad = true;
    }
    if (!comment) {
      fieldError("alerts-comment", t("alerts.err.comment"));
      bad = true;
    }
    if (bad) return;
    const button = node("alerts-silence-submit");
    button.disabled = true;
    const target = page.target;
    const result = await LH().api("/api/v1/alerts/silences", {
      method: "POST",
      json: { fingerprint: target.fingerprint, duration_minutes: minutes, comment },
    });
    button.disabled = false;
    if (!result.ok) {
      const details = (result.data && result.data.details) || [];
      const byField = { duration_minutes: "alerts-duration", comment: "alerts-comment" };
      let marked = false;
      for (const detail of details) {
        const id = byField[String(detail.field || "")];
        if (id) {
          fieldError(id, detail.field === "comment" ? t("alerts.err.comment") : t("alerts.err.duration", { max: MAX_MINUTES }));
          marked = true;
        }
      }
      if (!marked) {
        const error = node("alerts-form-error");
        error.textContent = errorMessage(result);
        LH().show(error, true);
      }
      return;
    }
    closeForm();
    page.done = { key: "alerts.form.done", vars: { name: target.alertname, until: LH().fmtTime(result.data.ends_at) } };
    await refresh_();
  }

  async function expire(silence, button) {
    button.disabled = true;
    const result = await LH().api(`/api/v1/alerts/silences/${encodeURIComponent(silence.id)}`, { method: "DELETE" });
    if (!result.ok) {
      button.disabled = false;
      page.done = null;
      page.actionFailure = result;
      renderStatus();
      return;
    }
    page.done = { key: "alerts.form.expired" };
    await refresh_();
  }

  // --- the page's life ---------------------------------------------------------------------------------------------

  function stopTimer() {
    if (page.timer) clearInterval(page.timer);
    page.timer = null;
  }

  window.addEventListener("lh:lang", () => {
    if (!page.built) return;
    fillPresets();
    renderFormTitle();
    renderAll();
  });

  window.LHPages = window.LHPages || {};
  window.LHPages.alerts = {
    start() {
      if (!page.built) build();
    },
    stop() {
      stopTimer();
      page.visible = false;
      page.alerts = null;
      page.silences = null;
      page.history = [];
      page.nextBeforeId = null;
      page.failures = [];
      page.updatedAt = null;
      page.actionFailure = null;
      page.done = null;
      page.seq += 1;
      if (page.built) {
        closeForm();
        renderAll();
      }
    },
    show() {
      if (!page.built) build();
      page.visible = true;
      refresh_();
      stopTimer();
      page.timer = setInterval(() => page.visible && refresh_(), REFRESH_MS);
    },
    hide() {
      page.visible = false;
      stopTimer();
    },
  };
})();
