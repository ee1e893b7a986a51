// The risk page (#risk): the rule sets of each level (global, account, instance) with their versions, an admin's form
// to change one, limit utilisation per account, trading states with the admin's kill switch, and the stops.
// Traders see their own account's, admins every account's; viewers read. Data from the gateway's /api/v1/risk/...
// (docs/risk-rules.md, docs/risk-stops.md). Server data is put on the page as text only.
"use strict";

(() => {
  const REFRESH_MS = 10000;
  const HISTORY_LIMIT = 50;
  const ID_INSTANCE = /^[0-9a-f]{32}$/;

  LHI18n.add({
    zh: {
      "risk.title": "风控",
      "risk.alertsLink": "查看告警",
      "risk.updated": "更新于 {time}",
      "risk.states.title": "交易状态",
      "risk.states.empty": "没有设置过交易状态：全部正常交易。",
      "risk.col.scope": "范围",
      "risk.col.key": "对象",
      "risk.col.state": "状态",
      "risk.col.reason": "原因",
      "risk.col.by": "操作人",
      "risk.col.at": "时间",
      "risk.col.version": "版本",
      "risk.col.rules": "规则",
      "risk.col.account": "账户",
      "risk.col.rule": "规则",
      "risk.col.limit": "限额",
      "risk.col.used": "占用",
      "risk.col.code": "代码",
      "risk.col.kind": "类型",
      "risk.col.trigger": "触发价 / 回撤",
      "risk.col.level": "触发水平",
      "risk.col.qty": "数量",
      "risk.col.status": "状态",
      "risk.col.created": "创建",
      "risk.scope.global": "全局",
      "risk.scope.account": "账户",
      "risk.scope.instance": "策略实例",
      "risk.state.halted": "暂停交易",
      "risk.state.reducing": "只减仓",
      "risk.state.active": "正常",
      "risk.kill.title": "熔断开关（管理员）",
      "risk.kill.scope": "范围",
      "risk.kill.key": "账户 / 实例 ID",
      "risk.kill.state": "设为",
      "risk.kill.reason": "原因",
      "risk.kill.cancel": "同时撤销该范围所有未成交订单",
      "risk.kill.submit": "设置…",
      "risk.kill.confirm": "确认：将{scope} {key} 设为「{state}」，原因：{reason}",
      "risk.kill.yes": "确认",
      "risk.kill.no": "取消",
      "risk.kill.done": "{scope} {key}：{from} → {state}",
      "risk.kill.unchanged": "{scope} {key} 已是「{state}」，未做改动。",
      "risk.kill.cancels": "撤单 {cancelled} 笔，失败 {failed} 笔",
      "risk.history": "历史",
      "risk.history.title": "{scope} {key} 的变更历史",
      "risk.history.none": "没有记录。",
      "risk.rules.title": "风控规则集",
      "risk.rules.empty": "尚未设置任何规则集：所有规则按默认值运行。",
      "risk.rules.effective": "对 {account} 生效的规则（各级中最严格者）",
      "risk.rules.effectiveGlobal": "全局生效的规则",
      "risk.rules.versions": "来源版本：全局 {global} · 账户 {account} · 实例 {instance}",
      "risk.rules.cleared": "（已清除）",
      "risk.rules.showHistory": "版本历史",
      "risk.rules.edit": "编辑",
      "risk.rules.historyTitle": "{scope} {key} 的版本历史",
      "risk.form.title": "修改规则集（管理员）",
      "risk.form.scope": "级别",
      "risk.form.key": "账户 / 实例 ID",
      "risk.form.rules": "规则（JSON，整级替换）",
      "risk.form.reason": "原因",
      "risk.form.load": "载入当前",
      "risk.form.submit": "保存为新版本",
      "risk.form.saved": "已保存：{scope} {key} 版本 {version}",
      "risk.form.unchanged": "与当前版本相同，未记录新版本。",
      "risk.form.badJson": "不是有效的 JSON 对象：{error}",
      "risk.form.needReason": "请填写原因",
      "risk.form.needKey": "请填写账户 ID",
      "risk.form.badInstance": "实例 ID 为 32 位十六进制",
      "risk.form.fix": "请修正标出的字段",
      "risk.util.title": "限额占用",
      "risk.util.help": "各账户最近一次被检查的订单对每项限额的占用（15 分钟内）；超过 100% 的订单被拒绝。",
      "risk.util.empty": "15 分钟内没有被检查的订单。",
      "risk.stops.title": "止损 / 止盈",
      "risk.stops.empty": "没有止损单。",
      "risk.stops.cancel": "撤销",
      "risk.stops.cancelled": "止损单 {id} 已撤销",
      "risk.stops.new": "新建止损单",
      "risk.stops.code": "证券代码",
      "risk.stops.kind": "类型",
      "risk.stops.price": "触发价",
      "risk.stops.trail": "回撤 %",
      "risk.stops.qty": "数量（留空：全部持仓）",
      "risk.stops.submit": "创建",
      "risk.stops.created": "止损单已创建：{id}",
      "risk.stops.badCode": "代码格式如 600000.SH",
      "risk.stops.badPrice": "请填写大于 0 的价格（最多 2 位小数）",
      "risk.stops.badTrail": "请填写 0 到 50 之间的百分比（最多 2 位小数）",
      "risk.stops.badQty": "数量须为正整数",
      "risk.kind.stop_loss": "止损",
      "risk.kind.take_profit": "止盈",
      "risk.kind.trailing": "跟踪止损",
      "risk.stop.armed": "生效中",
      "risk.stop.triggered": "已触发",
      "risk.stop.cancelled": "已撤销",
      "risk.stop.failed": "失败",
      "risk.readonly": "只读：只有管理员可以修改规则和交易状态。",
    },
    en: {
      "risk.title": "Risk",
      "risk.alertsLink": "See alerts",
      "risk.updated": "Updated {time}",
      "risk.states.title": "Trading states",
      "risk.states.empty": "No trading state was ever set: everything trades normally.",
      "risk.col.scope": "Scope",
      "risk.col.key": "Key",
      "risk.col.state": "State",
      "risk.col.reason": "Reason",
      "risk.col.by": "By",
      "risk.col.at": "At",
      "risk.col.version": "Version",
      "risk.col.rules": "Rules",
      "risk.col.account": "Account",
      "risk.col.rule": "Rule",
      "risk.col.limit": "Limit",
      "risk.col.used": "Used",
      "risk.col.code": "Code",
      "risk.col.kind": "Kind",
      "risk.col.trigger": "Trigger / trail",
      "risk.col.level": "Stop level",
      "risk.col.qty": "Qty",
      "risk.col.status": "Status",
      "risk.col.created": "Created",
      "risk.scope.global": "Global",
      "risk.scope.account": "Account",
      "risk.scope.instance": "Instance",
      "risk.state.halted": "Halted",
      "risk.state.reducing": "Reducing",
      "risk.state.active": "Active",
      "risk.kill.title": "Kill switch (admins)",
      "risk.kill.scope": "Scope",
      "risk.kill.key": "Account / instance id",
      "risk.kill.state": "Set to",
      "risk.kill.reason": "Reason",
      "risk.kill.cancel": "Also cancel every open order of the scope",
      "risk.kill.submit": "Set…",
      "risk.kill.confirm": "Confirm: set {scope} {key} to \"{state}\", reason: {reason}",
      "risk.kill.yes": "Confirm",
      "risk.kill.no": "Cancel",
      "risk.kill.done": "{scope} {key}: {from} → {state}",
      "risk.kill.unchanged": "{scope} {key} is \"{state}\" already: nothing changed.",
      "risk.kill.cancels": "{cancelled} orders cancelled, {failed} failed",
      "risk.history": "History",
      "risk.history.title": "Changes of {scope} {key}",
      "risk.history.none": "No record.",
      "risk.rules.title": "Risk rule sets",
      "risk.rules.empty": "No rule set yet: every rule runs with its defaults.",
      "risk.rules.effective": "Rules in force for {account} (the strictest of the levels)",
      "risk.rules.effectiveGlobal": "Rules in force globally",
      "risk.rules.versions": "From versions: global {global} · account {account} · instance {instance}",
      "risk.rules.cleared": "(cleared)",
      "risk.rules.showHistory": "Versions",
      "risk.rules.edit": "Edit",
      "risk.rules.historyTitle": "Versions of {scope} {key}",
      "risk.form.title": "Change a rule set (admins)",
      "risk.form.scope": "Level",
      "risk.form.key": "Account / instance id",
      "risk.form.rules": "Rules (JSON, replaces the level's whole set)",
      "risk.form.reason": "Reason",
      "risk.form.load": "Load current",
      "risk.form.submit": "Save as a new version",
      "risk.form.saved": "Saved: {scope} {key} version {version}",
      "risk.form.unchanged": "The same as the current version: no new version recorded.",
      "risk.form.badJson": "Not a JSON object: {error}",
      "risk.form.needReason": "Say why",
      "risk.form.needKey": "Enter the account id",
      "risk.form.badInstance": "An instance id is 32 hex digits",
      "risk.form.fix": "Fix the marked fields",
      "risk.util.title": "Limit utilisation",
      "risk.util.help": "Each limit's share at each account's last order checked (past 15 minutes); over 100% was refused.",
      "risk.util.empty": "No order checked in the past 15 minutes.",
      "risk.stops.title": "Stops",
      "risk.stops.empty": "No stops.",
      "risk.stops.cancel": "Cancel",
      "risk.stops.cancelled": "Stop {id} cancelled",
      "risk.stops.new": "New stop",
      "risk.stops.code": "Code",
      "risk.stops.kind": "Kind",
      "risk.stops.price": "Trigger price",
      "risk.stops.trail": "Trail %",
      "risk.stops.qty": "Qty (empty: the whole position)",
      "risk.stops.submit": "Create",
      "risk.stops.created": "Stop created: {id}",
      "risk.stops.badCode": "A code like 600000.SH",
      "risk.stops.badPrice": "A price above 0 (at most 2 decimals)",
      "risk.stops.badTrail": "A percentage in (0, 50] (at most 2 decimals)",
      "risk.stops.badQty": "A whole number of shares above 0",
      "risk.kind.stop_loss": "Stop-loss",
      "risk.kind.take_profit": "Take-profit",
      "risk.kind.trailing": "Trailing",
      "risk.stop.armed": "Armed",
      "risk.stop.triggered": "Triggered",
      "risk.stop.cancelled": "Cancelled",
      "risk.stop.failed": "Failed",
      "risk.readonly": "Read-only: only admins change rules and trading states.",
    },
  });

  const t = (key, vars) => LHI18n.t(key, vars);
  let root = null;
  let timer = null;
  let visible = false;
  let seq = 0;
  let updatedAt = null; // the last refresh that read everything
  const data = { states: null, rules: null, utilisation: null, stops: null, history: null, stateHistory: null };
  let pendingHalt = null;

  const L = () => window.LH;
  const role = () => (L().state.session ? L().state.session.role : "viewer");
  const isAdmin = () => role() === "admin";
  const canTrade = () => role() === "trader" || role() === "admin";

  function word(prefix, value) {
    const key = `${prefix}.${value}`;
    return LHI18n.has(key) ? t(key) : L().fmt(value);
  }

  function pct(text) {
    return text === null || text === undefined ? "—" : `${L().groupDigits(String(text))}%`;
  }

  function card(id, titleKey, ...body) {
    const { el } = L();
    return el(
      "div",
      { class: "card shadow-sm mb-3", id },
      el("div", { class: "card-header d-flex justify-content-between align-items-center flex-wrap gap-2" },
        el("span", { "data-i18n": titleKey, text: t(titleKey) })),
      el("div", { class: "card-body" }, ...body),
    );
  }

  function table(id, headKeys) {
    const { el } = L();
    return el(
      "div",
      { class: "table-responsive" },
      el(
        "table",
        { class: "table table-sm table-hover align-middle mb-0" },
        el("thead", {}, el("tr", {}, ...headKeys.map((k) => el("th", { class: "text-nowrap", "data-i18n": k, text: t(k) })))),
        el("tbody", { id }),
      ),
    );
  }

  function field(id, labelKey, input, col = "col-sm-6 col-lg-3") {
    const { el } = L();
    input.id = id;
    input.classList.add(input.tagName === "SELECT" ? "form-select" : "form-control");
    return el(
      "div",
      { class: col },
      el("label", { class: "form-label small", for: id, "data-i18n": labelKey, text: t(labelKey) }),
      input,
      el("div", { class: "invalid-feedback", id: `${id}-error` }),
    );
  }

  function options(values, prefix) {
    const { el } = L();
    return values.map((v) => el("option", { value: v, "data-word": `${prefix}.${v}`, text: t(`${prefix}.${v}`) }));
  }

  function build() {
    const { el } = L();
    root = document.getElementById("risk-view");
    const killForm = el(
      "form",
      { id: "risk-kill-form", class: "row g-2 align-items-end mt-2", novalidate: "" },
      field("risk-kill-scope", "risk.kill.scope", el("select", {}, ...options(["account", "instance", "global"], "risk.scope")), "col-sm-6 col-lg-2"),
      field("risk-kill-key", "risk.kill.key", el("input", { autocomplete: "off" }), "col-sm-6 col-lg-3"),
      field("risk-kill-state", "risk.kill.state", el("select", {}, ...options(["halted", "reducing", "active"], "risk.state")), "col-sm-6 col-lg-2"),
      field("risk-kill-reason", "risk.kill.reason", el("input", { maxlength: "500" }), "col-sm-6 col-lg-3"),
      el("div", { class: "col-lg-2" }, el("button", { class: "btn btn-danger w-100", type: "submit", id: "risk-kill-submit", "data-i18n": "risk.kill.submit", text: t("risk.kill.submit") })),
      el("div", { class: "col-12" },
        el("div", { class: "form-check" },
          el("input", { class: "form-check-input", type: "checkbox", id: "risk-kill-cancel" }),
          el("label", { class: "form-check-label small", for: "risk-kill-cancel", "data-i18n": "risk.kill.cancel", text: t("risk.kill.cancel") }))),
    );
    const confirmBox = el(
      "div",
      { class: "alert alert-warning d-none mt-2", id: "risk-kill-confirm", role: "alertdialog" },
      el("div", { id: "risk-kill-confirm-text", class: "mb-2" }),
      el("button", { class: "btn btn-danger btn-sm me-2", type: "button", id: "risk-kill-yes", "data-i18n": "risk.kill.yes", text: t("risk.kill.yes") }),
      el("button", { class: "btn btn-outline-secondary btn-sm", type: "button", id: "risk-kill-no", "data-i18n": "risk.kill.no", text: t("risk.kill.no") }),
    );
    const killBox = el(
      "div",
      { id: "risk-kill", class: "border-top pt-2 mt-3" },
      el("h2", { class: "h6", "data-i18n": "risk.kill.title", text: t("risk.kill.title") }),
      killForm,
      confirmBox,
      el("div", { id: "risk-kill-result", class: "small mt-2", role: "status" }),
    );
    const ruleForm = el(
      "form",
      { id: "risk-rule-form", class: "row g-2 mt-1", novalidate: "" },
      field("risk-rule-scope", "risk.form.scope", el("select", {}, ...options(["global", "account", "instance"], "risk.scope")), "col-sm-4 col-lg-2"),
      field("risk-rule-key", "risk.form.key", el("input", { autocomplete: "off" }), "col-sm-8 col-lg-4"),
      field("risk-rule-reason", "risk.form.reason", el("input", { maxlength: "500" }), "col-lg-6"),
      field("risk-rule-rules", "risk.form.rules", el("textarea", { rows: "5", spellcheck: "false", class: "font-monospace small" }), "col-12"),
      el("div", { class: "col-12 d-flex gap-2 flex-wrap" },
        el("button", { class: "btn btn-outline-secondary", type: "button", id: "risk-rule-load", "data-i18n": "risk.form.load", text: t("risk.form.load") }),
        el("button", { class: "btn btn-primary", type: "submit", id: "risk-rule-submit", "data-i18n": "risk.form.submit", text: t("risk.form.submit") })),
    );
    const ruleBox = el(
      "div",
      { id: "risk-rule-edit", class: "border-top pt-2 mt-3" },
      el("h2", { class: "h6", "data-i18n": "risk.form.title", text: t("risk.form.title") }),
      ruleForm,
      el("div", { id: "risk-rule-result", class: "small mt-2", role: "status" }),
    );
    const stopForm = el(
      "form",
      { id: "risk-stop-form", class: "row g-2 align-items-end border-top pt-2 mt-3", novalidate: "" },
      el("h2", { class: "h6 col-12 mb-0", "data-i18n": "risk.stops.new", text: t("risk.stops.new") }),
      field("risk-stop-code", "risk.stops.code", el("input", { placeholder: "600000.SH", autocomplete: "off" }), "col-sm-6 col-lg-2"),
      field("risk-stop-kind", "risk.stops.kind", el("select", {}, ...options(["stop_loss", "take_profit", "trailing"], "risk.kind")), "col-sm-6 col-lg-2"),
      field("risk-stop-price", "risk.stops.price", el("input", { inputmode: "decimal" }), "col-sm-4 col-lg-2"),
      field("risk-stop-trail", "risk.stops.trail", el("input", { inputmode: "decimal" }), "col-sm-4 col-lg-2"),
      field("risk-stop-qty", "risk.stops.qty", el("input", { inputmode: "numeric" }), "col-sm-4 col-lg-2"),
      el("div", { class: "col-lg-2" }, el("button", { class: "btn btn-primary w-100", type: "submit", id: "risk-stop-submit", "data-i18n": "risk.stops.submit", text: t("risk.stops.submit") })),
      el("div", { id: "risk-stop-result", class: "small col-12", role: "status" }),
    );
    root.replaceChildren(
      el(
        "div",
        { class: "d-flex flex-wrap align-items-center gap-2 mb-3" },
        el("h1", { class: "h5 mb-0 me-auto", "data-i18n": "risk.title", text: t("risk.title") }),
        el("span", { class: "small text-body-secondary", id: "risk-updated" }),
        el("a", { class: "btn btn-outline-warning btn-sm", href: "#alerts", id: "risk-alerts-link", "data-i18n": "risk.alertsLink", text: t("risk.alertsLink") }),
        el("button", { class: "btn btn-outline-secondary btn-sm", type: "button", id: "risk-refresh", "data-i18n": "common.refresh", text: t("common.refresh") }),
      ),
      el("div", { class: "alert alert-danger d-none", id: "risk-error", role: "alert" }),
      el("p", { class: "small text-body-secondary d-none", id: "risk-readonly", "data-i18n": "risk.readonly", text: t("risk.readonly") }),
      el(
        "div",
        { class: "row g-3" },
        el(
          "div",
          { class: "col-xl-6" },
          card("risk-states-card", "risk.states.title",
            table("risk-states", ["risk.col.scope", "risk.col.key", "risk.col.state", "risk.col.reason", "risk.col.by", "risk.col.at", "risk.history"]),
            el("div", { id: "risk-state-history", class: "mt-2" }),
            killBox),
          card("risk-util-card", "risk.util.title",
            el("p", { class: "small text-body-secondary", "data-i18n": "risk.util.help", text: t("risk.util.help") }),
            table("risk-util", ["risk.col.account", "risk.col.rule", "risk.col.limit", "risk.col.used", "risk.col.at"])),
        ),
        el(
          "div",
          { class: "col-xl-6" },
          card("risk-rules-card", "risk.rules.title",
            table("risk-rule-sets", ["risk.col.scope", "risk.col.key", "risk.col.version", "risk.col.rules", "risk.col.by", "risk.col.at", "risk.col.reason", ""]),
            el("div", { id: "risk-effective", class: "mt-2 small" }),
            el("div", { id: "risk-rule-history", class: "mt-2" }),
            ruleBox),
        ),
        el(
          "div",
          { class: "col-12" },
          card("risk-stops-card", "risk.stops.title",
            table("risk-stops", ["risk.col.account", "risk.col.code", "risk.col.kind", "risk.col.trigger", "risk.col.level", "risk.col.qty", "risk.col.status", "risk.col.created", ""]),
            stopForm),
        ),
      ),
    );
    document.getElementById("risk-refresh").addEventListener("click", refresh);
    killForm.addEventListener("submit", askHalt);
    document.getElementById("risk-kill-yes").addEventListener("click", sendHalt);
    document.getElementById("risk-kill-no").addEventListener("click", () => {
      pendingHalt = null;
      L().show(document.getElementById("risk-kill-confirm"), false);
    });
    document.getElementById("risk-kill-scope").addEventListener("change", () => {
      document.getElementById("risk-kill-key").disabled = document.getElementById("risk-kill-scope").value === "global";
    });
    document.getElementById("risk-rule-scope").addEventListener("change", () => {
      document.getElementById("risk-rule-key").disabled = document.getElementById("risk-rule-scope").value === "global";
    });
    document.getElementById("risk-rule-key").disabled = true;
    document.getElementById("risk-rule-load").addEventListener("click", loadCurrent);
    ruleForm.addEventListener("submit", saveRules);
    stopForm.addEventListener("submit", createStop);
    const kindSelect = document.getElementById("risk-stop-kind");
    kindSelect.addEventListener("change", stopKindChanged);
    stopKindChanged();
  }

  function stopKindChanged() {
    const trailing = document.getElementById("risk-stop-kind").value === "trailing";
    document.getElementById("risk-stop-price").disabled = trailing;
    document.getElementById("risk-stop-trail").disabled = !trailing;
  }

  function applyRole() {
    const { show } = L();
    show(document.getElementById("risk-kill"), isAdmin());
    show(document.getElementById("risk-rule-edit"), isAdmin());
    show(document.getElementById("risk-stop-form"), canTrade());
    show(document.getElementById("risk-readonly"), !isAdmin());
  }

  // --- fields and errors ------------------------------------------------------------------------------------

  function clearErrors(form) {
    for (const node of form.querySelectorAll(".is-invalid")) node.classList.remove("is-invalid");
    for (const node of form.querySelectorAll(".invalid-feedback")) node.textContent = "";
  }

  function markError(id, message) {
    const input = document.getElementById(id);
    const feedback = document.getElementById(`${id}-error`);
    if (!input || !feedback) return false;
    input.classList.add("is-invalid");
    feedback.textContent = feedback.textContent ? `${feedback.textContent}; ${message}` : message;
    return true;
  }

  // The API's 422 details name the field: rules.* is the rules box, the others the field of that name.
  function markApiErrors(prefix, result, fieldMap) {
    const details = result.data && Array.isArray(result.data.details) ? result.data.details : [];
    let marked = false;
    for (const d of details) {
      const name = String(d.field || "");
      const head = name.split(".")[0];
      const id = fieldMap[head] ? `${prefix}-${fieldMap[head]}` : null;
      if (id && markError(id, name.includes(".") ? `${name}: ${d.message}` : String(d.message))) marked = true;
    }
    return marked;
  }

  function resultLine(node, ok, text) {
    node.className = `small mt-2 ${ok ? "text-success" : "text-danger"}`;
    node.textContent = text;
  }

  // --- loading ----------------------------------------------------------------------------------------------

  async function refresh() {
    if (!L().state.session || !root) return;
    const mine = ++seq;
    const { api, errorText } = L();
    const [states, rules, utilisation, stops] = await Promise.all([
      api("/api/v1/risk/trading-states"),
      api("/api/v1/risk/rules"),
      api("/api/v1/risk/utilisation"),
      api("/api/v1/risk/stops"),
    ]);
    if (mine !== seq || !L().state.session) return;
    const errors = [];
    const take = (name, result, ok) => {
      if (result.ok && ok(result.data)) data[name] = result.data;
      else errors.push(`${t(`risk.${name}.title`)}: ${errorText(result)}`);
    };
    take("states", states, (d) => d && Array.isArray(d.states));
    take("rules", rules, (d) => d && Array.isArray(d.rule_sets));
    take("util", utilisation, (d) => d && Array.isArray(d.accounts));
    take("stops", stops, Array.isArray);
    const box = document.getElementById("risk-error");
    box.textContent = errors.length ? t("common.failed", { reason: errors.join(" · ") }) : "";
    L().show(box, errors.length > 0);
    if (!errors.length) updatedAt = new Date().toISOString();
    render();
  }

  function render() {
    if (!root) return;
    document.getElementById("risk-updated").textContent = updatedAt ? t("risk.updated", { time: L().fmtTime(updatedAt) }) : "";
    renderStates();
    renderRules();
    renderUtilisation();
    renderStops();
    renderHistory();
    renderStateHistory();
  }

  function emptyRow(columns, key) {
    return L().emptyRow(columns, t(key)); // app.js's empty-table row, in this page's words
  }

  function stateBadge(state) {
    const { el } = L();
    const cls = state === "halted" ? "text-bg-danger" : state === "reducing" ? "text-bg-warning" : "text-bg-success";
    return el("span", { class: `badge ${cls}`, "data-state": state, text: word("risk.state", state) });
  }

  function renderStates() {
    const { el, fmt, fmtTime } = L();
    const body = document.getElementById("risk-states");
    const states = data.states ? data.states.states : [];
    body.replaceChildren(...states.map((s) => el(
      "tr",
      { "data-scope": s.scope, "data-key": s.key },
      el("td", { text: word("risk.scope", s.scope) }),
      el("td", { class: "mono", text: fmt(s.key) }),
      el("td", {}, stateBadge(s.state)),
      el("td", { class: "small", text: fmt(s.reason) }),
      el("td", { text: fmt(s.set_by) }),
      el("td", { class: "small text-nowrap", text: fmtTime(s.set_at) }),
      el("td", {}, el("button", { class: "btn btn-link btn-sm p-0", type: "button", text: t("risk.history"),
        onclick: () => loadStateHistory(s.scope, s.key) })),
    )));
    if (!states.length) body.append(emptyRow(7, "risk.states.empty"));
  }

  async function loadStateHistory(scope, key) {
    const { api, errorText } = L();
    const query = new URLSearchParams({ scope, key: key || "", limit: String(HISTORY_LIMIT) });
    const result = await api(`/api/v1/risk/trading-states?${query}`);
    data.stateHistory = { scope, key, result: result.ok ? result.data.history || [] : null, error: result.ok ? "" : errorText(result) };
    renderStateHistory();
  }

  function renderStateHistory() {
    const { el, fmt, fmtTime } = L();
    const box = document.getElementById("risk-state-history");
    const h = data.stateHistory;
    if (!h) return box.replaceChildren();
    const title = el("div", { class: "small fw-semibold", text: t("risk.history.title", { scope: word("risk.scope", h.scope), key: h.key || "" }) });
    if (h.result === null) return box.replaceChildren(title, el("div", { class: "text-danger small", text: t("common.failed", { reason: h.error }) }));
    const rows = h.result.map((c) => el(
      "li",
      { class: "small" },
      `${fmtTime(c.set_at)} · ${fmt(c.set_by)} · ${word("risk.state", c.from_state || "active")} → ${word("risk.state", c.state)} · ${fmt(c.reason)}`,
    ));
    box.replaceChildren(title, rows.length ? el("ul", { class: "mb-0" }, ...rows) : el("div", { class: "small", text: t("risk.history.none") }));
  }

  function compact(body) {
    return body === null || body === undefined ? t("risk.rules.cleared") : JSON.stringify(body);
  }

  function renderRules() {
    const { el, fmt, fmtTime } = L();
    const body = document.getElementById("risk-rule-sets");
    const sets = data.rules ? data.rules.rule_sets : [];
    body.replaceChildren(...sets.map((r) => el(
      "tr",
      { "data-scope": r.scope, "data-key": r.key, "data-version": String(r.version) },
      el("td", { text: word("risk.scope", r.scope) }),
      el("td", { class: "mono", text: fmt(r.key) }),
      el("td", { class: "text-end", text: `v${r.version}` }),
      el("td", { class: "risk-rules-cell" }, el("code", { class: "small text-break", text: compact(r.body) })),
      el("td", { text: fmt(r.set_by) }),
      el("td", { class: "small text-nowrap", text: fmtTime(r.set_at) }),
      el("td", { class: "small", text: fmt(r.reason) }),
      el("td", { class: "text-nowrap" },
        el("button", { class: "btn btn-link btn-sm p-0 me-2", type: "button", text: t("risk.rules.showHistory"),
          onclick: () => loadRuleHistory(r.scope, r.key) }),
        isAdmin() ? el("button", { class: "btn btn-link btn-sm p-0", type: "button", text: t("risk.rules.edit"),
          onclick: () => editLevel(r) }) : null),
    )));
    if (!sets.length) body.append(emptyRow(8, "risk.rules.empty"));
    const eff = data.rules && data.rules.effective;
    const box = document.getElementById("risk-effective");
    if (!eff) return box.replaceChildren();
    const v = eff.versions || {};
    const ver = (n) => (n === null || n === undefined ? "—" : `v${n}`);
    box.replaceChildren(
      el("div", { class: "fw-semibold", text: eff.account_id ? t("risk.rules.effective", { account: eff.account_id }) : t("risk.rules.effectiveGlobal") }),
      el("div", { class: "text-body-secondary", text: t("risk.rules.versions", { global: ver(v.global), account: ver(v.account), instance: ver(v.instance) }) }),
      el("pre", { class: "small bg-body-tertiary p-2 mb-0 risk-effective", text: JSON.stringify(eff.rules, null, 1) }),
    );
  }

  async function loadRuleHistory(scope, key) {
    const { api, errorText } = L();
    const query = new URLSearchParams({ key: key || "", limit: String(HISTORY_LIMIT) });
    const result = await api(`/api/v1/risk/rules/${encodeURIComponent(scope)}/history?${query}`);
    data.history = { scope, key, result: result.ok && Array.isArray(result.data) ? result.data : null, error: result.ok ? "" : errorText(result) };
    renderHistory();
  }

  function renderHistory() {
    const { el, fmt, fmtTime } = L();
    const box = document.getElementById("risk-rule-history");
    const h = data.history;
    if (!h) return box.replaceChildren();
    const title = el("div", { class: "small fw-semibold", text: t("risk.rules.historyTitle", { scope: word("risk.scope", h.scope), key: h.key || "" }) });
    if (h.result === null) return box.replaceChildren(title, el("div", { class: "text-danger small", text: t("common.failed", { reason: h.error }) }));
    const rows = h.result.map((r) => el(
      "tr",
      { "data-version": String(r.version) },
      el("td", { class: "text-end", text: `v${r.version}` }),
      el("td", { text: fmt(r.set_by) }),
      el("td", { class: "small text-nowrap", text: fmtTime(r.set_at) }),
      el("td", { class: "small", text: fmt(r.reason) }),
      el("td", {}, el("code", { class: "small text-break", text: compact(r.body) })),
    ));
    const head = ["risk.col.version", "risk.col.by", "risk.col.at", "risk.col.reason", "risk.col.rules"];
    box.replaceChildren(
      title,
      el("div", { class: "table-responsive" },
        el("table", { class: "table table-sm mb-0", id: "risk-rule-history-table" },
          el("thead", {}, el("tr", {}, ...head.map((k) => el("th", { text: t(k) })))),
          el("tbody", {}, ...(rows.length ? rows : [emptyRow(5, "risk.history.none")])))),
    );
  }

  function editLevel(r) {
    document.getElementById("risk-rule-scope").value = r.scope;
    const key = document.getElementById("risk-rule-key");
    key.value = r.key || "";
    key.disabled = r.scope === "global";
    document.getElementById("risk-rule-rules").value = r.body ? JSON.stringify(r.body, null, 2) : "{}";
    document.getElementById("risk-rule-reason").focus();
  }

  function loadCurrent() {
    const scope = document.getElementById("risk-rule-scope").value;
    const key = scope === "global" ? "" : document.getElementById("risk-rule-key").value.trim();
    const found = (data.rules ? data.rules.rule_sets : []).find((r) => r.scope === scope && (r.key || "") === key);
    document.getElementById("risk-rule-rules").value = found && found.body ? JSON.stringify(found.body, null, 2) : "{}";
  }

  function checkKey(prefix, scope, key) {
    if (scope === "global") return true;
    if (!key) return markError(`${prefix}-key`, t("risk.form.needKey")) && false;
    if (scope === "instance" && !ID_INSTANCE.test(key)) return markError(`${prefix}-key`, t("risk.form.badInstance")) && false;
    return true;
  }

  async function saveRules(event) {
    event.preventDefault();
    const form = document.getElementById("risk-rule-form");
    const out = document.getElementById("risk-rule-result");
    clearErrors(form);
    out.textContent = "";
    const scope = document.getElementById("risk-rule-scope").value;
    const key = scope === "global" ? "" : document.getElementById("risk-rule-key").value.trim();
    const reason = document.getElementById("risk-rule-reason").value.trim();
    let ok = checkKey("risk-rule", scope, key);
    let rules = null;
    try {
      rules = JSON.parse(document.getElementById("risk-rule-rules").value || "{}");
      if (rules === null || typeof rules !== "object" || Array.isArray(rules)) throw new Error("{…}");
    } catch (err) {
      markError("risk-rule-rules", t("risk.form.badJson", { error: err.message }));
      ok = false;
    }
    if (!reason) ok = markError("risk-rule-reason", t("risk.form.needReason")) && false;
    if (!ok) return resultLine(out, false, t("risk.form.fix"));
    const button = document.getElementById("risk-rule-submit");
    button.disabled = true;
    try {
      const body = scope === "global" ? { rules, reason } : { key, rules, reason };
      const result = await L().api(`/api/v1/risk/rules/${scope}`, { method: "PUT", json: body });
      if (result.ok && result.data) {
        const d = result.data;
        resultLine(out, true, d.changed
          ? t("risk.form.saved", { scope: word("risk.scope", d.scope), key: d.key || "", version: `v${d.version}` })
          : t("risk.form.unchanged"));
        await refresh();
        await loadRuleHistory(scope, key);
        return;
      }
      markApiErrors("risk-rule", result, { rules: "rules", reason: "reason", key: "key" });
      resultLine(out, false, L().errorText(result));
    } finally {
      button.disabled = false;
    }
  }

  // --- the kill switch --------------------------------------------------------------------------------------

  function askHalt(event) {
    event.preventDefault();
    const form = document.getElementById("risk-kill-form");
    clearErrors(form);
    const scope = document.getElementById("risk-kill-scope").value;
    const key = scope === "global" ? "" : document.getElementById("risk-kill-key").value.trim();
    const state = document.getElementById("risk-kill-state").value;
    const reason = document.getElementById("risk-kill-reason").value.trim();
    let ok = checkKey("risk-kill", scope, key);
    if (!reason) ok = markError("risk-kill-reason", t("risk.form.needReason")) && false;
    if (!ok) {
      resultLine(document.getElementById("risk-kill-result"), false, t("risk.form.fix"));
      return;
    }
    const body = { scope, state, reason, cancel_open_orders: document.getElementById("risk-kill-cancel").checked };
    if (scope === "account") body.account_id = key;
    if (scope === "instance") body.instance_id = key;
    pendingHalt = body;
    document.getElementById("risk-kill-confirm-text").textContent = t("risk.kill.confirm", {
      scope: word("risk.scope", scope), key, state: word("risk.state", state), reason,
    });
    document.getElementById("risk-kill-result").textContent = "";
    L().show(document.getElementById("risk-kill-confirm"), true);
  }

  async function sendHalt() {
    const body = pendingHalt;
    if (!body) return;
    pendingHalt = null;
    L().show(document.getElementById("risk-kill-confirm"), false);
    const out = document.getElementById("risk-kill-result");
    const result = await L().api("/api/v1/risk/halt", { method: "POST", json: body });
    if (result.ok && result.data) {
      const d = result.data;
      const vars = { scope: word("risk.scope", d.scope), key: d.key || "", from: word("risk.state", d.from_state), state: word("risk.state", d.state) };
      let text = d.changed ? t("risk.kill.done", vars) : t("risk.kill.unchanged", vars);
      if (d.cancels) text += ` · ${t("risk.kill.cancels", { cancelled: d.cancels.cancelled, failed: d.cancels.failed })}`;
      resultLine(out, true, text);
      await refresh();
      await loadStateHistory(d.scope, d.key);
      return;
    }
    markApiErrors("risk-kill", result, { account_id: "key", instance_id: "key", reason: "reason", state: "state", scope: "scope" });
    resultLine(out, false, L().errorText(result));
  }

  // --- utilisation ------------------------------------------------------------------------------------------

  function renderUtilisation() {
    const { el, fmtTime } = L();
    const body = document.getElementById("risk-util");
    const accounts = data.util ? data.util.accounts : [];
    const rows = [];
    for (const a of accounts) {
      for (const limit of a.limits) {
        const value = Number(limit.pct); // for the colour and the bar only; the text is the server's digits
        const cls = value > 100 ? "bg-danger" : value >= 80 ? "bg-warning" : "bg-success";
        rows.push(el(
          "tr",
          { "data-account": a.account_id, "data-code": limit.code },
          el("td", { class: "mono", text: a.account_id }),
          el("td", { class: "small", text: limit.rule }),
          el("td", { class: "small mono", text: limit.code }),
          el("td", { class: "util-cell" },
            el("div", { class: "d-flex align-items-center gap-2" },
              el("div", { class: "progress flex-grow-1", role: "progressbar", "aria-valuenow": limit.pct, "aria-valuemin": "0", "aria-valuemax": "100" },
                (() => {
                  const bar = el("div", { class: `progress-bar ${cls}` });
                  bar.style.width = `${Math.min(Math.max(value, 0), 100)}%`;
                  return bar;
                })()),
              el("span", { class: `text-end text-nowrap ${value > 100 ? "text-danger fw-semibold" : ""}`, text: pct(limit.pct) }))),
          el("td", { class: "small text-nowrap", text: fmtTime(limit.measured_at) }),
        ));
      }
    }
    body.replaceChildren(...rows);
    if (!rows.length) body.append(emptyRow(5, "risk.util.empty"));
  }

  // --- stops ------------------------------------------------------------------------------------------------

  function renderStops() {
    const { el, fmt, fmtTime, groupDigits } = L();
    const body = document.getElementById("risk-stops");
    const stops = data.stops || [];
    body.replaceChildren(...stops.map((s) => el(
      "tr",
      { "data-stop": s.stop_id },
      el("td", { class: "mono", text: fmt(s.account_id) }),
      el("td", { class: "mono", text: fmt(s.ts_code) }),
      el("td", { text: word("risk.kind", s.kind) }),
      el("td", { class: "text-end", text: s.kind === "trailing" ? pct(s.trail_pct) : groupDigits(s.trigger_price) }),
      el("td", { class: "text-end", text: groupDigits(s.stop_level) }),
      el("td", { class: "text-end", text: s.qty === null ? "—" : groupDigits(s.qty) }),
      el("td", { text: word("risk.stop", s.status) }),
      el("td", { class: "small text-nowrap", text: fmtTime(s.created_at) }),
      el("td", {}, s.status === "armed" && canTrade()
        ? el("button", { class: "btn btn-outline-danger btn-sm", type: "button", text: t("risk.stops.cancel"), onclick: () => cancelStop(s.stop_id) })
        : null),
    )));
    if (!stops.length) body.append(emptyRow(9, "risk.stops.empty"));
  }

  async function cancelStop(stopId) {
    const out = document.getElementById("risk-stop-result");
    const result = await L().api(`/api/v1/risk/stops/${encodeURIComponent(stopId)}`, { method: "DELETE" });
    if (result.ok) resultLine(out, true, t("risk.stops.cancelled", { id: stopId }));
    else resultLine(out, false, L().errorText(result));
    await refresh();
  }

  async function createStop(event) {
    event.preventDefault();
    const form = document.getElementById("risk-stop-form");
    const out = document.getElementById("risk-stop-result");
    clearErrors(form);
    const code = document.getElementById("risk-stop-code").value.trim().toUpperCase();
    const kind = document.getElementById("risk-stop-kind").value;
    const price = document.getElementById("risk-stop-price").value.trim();
    const trail = document.getElementById("risk-stop-trail").value.trim();
    const qty = document.getElementById("risk-stop-qty").value.trim();
    let ok = true;
    if (!/^\d{6}\.(SH|SZ|BJ)$/.test(code)) ok = markError("risk-stop-code", t("risk.stops.badCode")) && false;
    const body = { ts_code: code, kind };
    if (kind === "trailing") {
      if (!/^\d{1,2}(\.\d{1,2})?$/.test(trail) || Number(trail) <= 0 || Number(trail) > 50) ok = markError("risk-stop-trail", t("risk.stops.badTrail")) && false;
      body.trail_pct = trail;
    } else {
      if (!/^\d{1,10}(\.\d{1,2})?$/.test(price) || /^0+(\.0+)?$/.test(price)) ok = markError("risk-stop-price", t("risk.stops.badPrice")) && false;
      body.trigger_price = price;
    }
    if (qty) {
      if (!/^[1-9]\d{0,11}$/.test(qty)) ok = markError("risk-stop-qty", t("risk.stops.badQty")) && false;
      body.qty = Number(qty);
    }
    if (!ok) return resultLine(out, false, t("risk.form.fix"));
    const result = await L().api("/api/v1/risk/stops", { method: "POST", json: body });
    if (result.ok && result.data) {
      resultLine(out, true, t("risk.stops.created", { id: result.data.stop_id }));
      await refresh();
      return;
    }
    markApiErrors("risk-stop", result, { ts_code: "code", trigger_price: "price", trail_pct: "trail", qty: "qty", kind: "kind" });
    resultLine(out, false, L().errorText(result));
  }

  // --- page life --------------------------------------------------------------------------------------------

  function relabel() {
    if (!root) return;
    LHI18n.apply(root);
    for (const option of root.querySelectorAll("option[data-word]")) option.textContent = t(option.dataset.word);
    render();
  }

  window.LHPages = window.LHPages || {};
  window.LHPages.risk = {
    start() {
      if (!root) build();
      applyRole();
    },
    stop() {
      clearInterval(timer);
      timer = null;
      visible = false;
      seq += 1;
      updatedAt = null;
      for (const key of Object.keys(data)) data[key] = null;
      pendingHalt = null;
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
      clearInterval(timer);
      timer = setInterval(refresh, REFRESH_MS);
    },
    hide() {
      visible = false;
      clearInterval(timer);
      timer = null;
    },
  };
  window.addEventListener("lh:lang", relabel);
})();
