// The admin page (admins only): users and roles, API keys, the services' health and the audit log.
// Its nav link shows for admins only (available()); the gateway refuses everyone else on every API it calls.
"use strict";

(() => {
  const ROLES = ["viewer", "trader", "admin"];
  const RANK = { viewer: 0, trader: 1, admin: 2 };
  const USERNAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$/;
  const MIN_PASSWORD = 8;
  const HEALTH_REFRESH_MS = 15000;
  const AUDIT_PAGE = 50;

  window.LHI18n.add({
    zh: {
      "admin.title": "管理",
      "admin.users": "用户与角色",
      "admin.users.username": "用户名",
      "admin.users.password": "密码",
      "admin.users.role": "角色",
      "admin.users.account": "资金账户",
      "admin.users.accountHint": "默认同用户名",
      "admin.users.created": "创建时间",
      "admin.users.status": "状态",
      "admin.users.active": "启用",
      "admin.users.disabled": "已停用",
      "admin.users.create": "创建用户",
      "admin.users.created.ok": "已创建用户 {name}",
      "admin.users.disable": "停用",
      "admin.users.enable": "启用",
      "admin.users.changed": "{name}：已更新",
      "admin.users.roleConfirm": "确认：将 {name} 的角色从「{from}」改为「{to}」？",
      "admin.users.roleYes": "确认修改",
      "admin.users.roleNo": "取消",
      "admin.users.you": "（你）",
      "admin.role.viewer": "观察者",
      "admin.role.trader": "交易员",
      "admin.role.admin": "管理员",
      "admin.keys": "API 密钥",
      "admin.keys.all": "显示所有用户的密钥",
      "admin.keys.id": "密钥 ID",
      "admin.keys.owner": "所有者",
      "admin.keys.name": "名称",
      "admin.keys.role": "角色",
      "admin.keys.expires": "到期",
      "admin.keys.expiresHint": "留空则不过期",
      "admin.keys.lastUsed": "最近使用",
      "admin.keys.status": "状态",
      "admin.keys.active": "有效",
      "admin.keys.revoked": "已吊销",
      "admin.keys.expired": "已过期",
      "admin.keys.never": "永不",
      "admin.keys.create": "创建密钥",
      "admin.keys.revoke": "吊销",
      "admin.keys.secret": "新密钥（只显示这一次，请立即保存）：",
      "admin.keys.roleHint": "不能高于你自己的角色",
      "admin.health": "服务健康",
      "admin.health.service": "服务",
      "admin.health.healthz": "存活",
      "admin.health.readyz": "就绪",
      "admin.health.checks": "依赖",
      "admin.health.latency": "延迟 (ms)",
      "admin.health.updated": "更新于 {time}",
      "admin.state.ok": "正常",
      "admin.state.ready": "就绪",
      "admin.state.not_ready": "未就绪",
      "admin.state.unavailable": "不可用",
      "admin.audit": "审计日志",
      "admin.audit.user": "用户",
      "admin.audit.path": "路径前缀",
      "admin.audit.since": "起始时间",
      "admin.audit.filter": "筛选",
      "admin.audit.time": "时间",
      "admin.audit.via": "方式",
      "admin.audit.method": "方法",
      "admin.audit.resource": "资源",
      "admin.audit.status": "状态码",
      "admin.audit.request": "请求 ID",
      "admin.audit.older": "更早",
      "admin.audit.empty": "没有记录",
      "admin.audit.anonymous": "（未认证）",
      "admin.via.jwt": "会话",
      "admin.via.api_key": "API 密钥",
      "admin.via.password": "登录",
      "admin.error.username": "用户名须以字母或数字开头，只含字母、数字和 _ . @ -，最多 64 个字符",
      "admin.error.password": "密码至少 {n} 个字符",
      "admin.error.account": "账户须以字母或数字开头，只含字母、数字和 _ . @ -",
      "admin.error.name": "请填写名称（最多 100 个字符）",
      "admin.error.expires": "到期时间须在将来",
      "admin.error.path": "路径前缀须以 / 开头",
      "admin.error.action": "{what}失败：{reason}",
    },
    en: {
      "admin.title": "Admin",
      "admin.users": "Users and roles",
      "admin.users.username": "Username",
      "admin.users.password": "Password",
      "admin.users.role": "Role",
      "admin.users.account": "Account",
      "admin.users.accountHint": "defaults to the username",
      "admin.users.created": "Created",
      "admin.users.status": "Status",
      "admin.users.active": "Active",
      "admin.users.disabled": "Disabled",
      "admin.users.create": "Create user",
      "admin.users.created.ok": "User {name} created",
      "admin.users.disable": "Disable",
      "admin.users.enable": "Enable",
      "admin.users.changed": "{name}: updated",
      "admin.users.roleConfirm": "Confirm: change {name}'s role from \"{from}\" to \"{to}\"?",
      "admin.users.roleYes": "Change role",
      "admin.users.roleNo": "Cancel",
      "admin.users.you": " (you)",
      "admin.role.viewer": "Viewer",
      "admin.role.trader": "Trader",
      "admin.role.admin": "Admin",
      "admin.keys": "API keys",
      "admin.keys.all": "Show every user's keys",
      "admin.keys.id": "Key id",
      "admin.keys.owner": "Owner",
      "admin.keys.name": "Name",
      "admin.keys.role": "Role",
      "admin.keys.expires": "Expires",
      "admin.keys.expiresHint": "empty: never",
      "admin.keys.lastUsed": "Last used",
      "admin.keys.status": "Status",
      "admin.keys.active": "Active",
      "admin.keys.revoked": "Revoked",
      "admin.keys.expired": "Expired",
      "admin.keys.never": "Never",
      "admin.keys.create": "Create key",
      "admin.keys.revoke": "Revoke",
      "admin.keys.secret": "New key (shown only this once, store it now):",
      "admin.keys.roleHint": "not above your own role",
      "admin.health": "Services' health",
      "admin.health.service": "Service",
      "admin.health.healthz": "Alive",
      "admin.health.readyz": "Ready",
      "admin.health.checks": "Dependencies",
      "admin.health.latency": "Latency (ms)",
      "admin.health.updated": "Updated {time}",
      "admin.state.ok": "OK",
      "admin.state.ready": "Ready",
      "admin.state.not_ready": "Not ready",
      "admin.state.unavailable": "Unavailable",
      "admin.audit": "Audit log",
      "admin.audit.user": "User",
      "admin.audit.path": "Path prefix",
      "admin.audit.since": "Since",
      "admin.audit.filter": "Filter",
      "admin.audit.time": "Time",
      "admin.audit.via": "Via",
      "admin.audit.method": "Method",
      "admin.audit.resource": "Resource",
      "admin.audit.status": "Status",
      "admin.audit.request": "Request id",
      "admin.audit.older": "Older",
      "admin.audit.empty": "No entries",
      "admin.audit.anonymous": "(not signed in)",
      "admin.via.jwt": "Session",
      "admin.via.api_key": "API key",
      "admin.via.password": "Log-in",
      "admin.error.username": "A username starts with a letter or digit and holds only letters, digits and _ . @ - " +
        "(at most 64)",
      "admin.error.password": "A password has at least {n} characters",
      "admin.error.account": "An account starts with a letter or digit and holds only letters, digits and _ . @ -",
      "admin.error.name": "Give the key a name (at most 100 characters)",
      "admin.error.expires": "The expiry must be in the future",
      "admin.error.path": "A path prefix starts with /",
      "admin.error.action": "{what} failed: {reason}",
    },
  });

  const t = (key, vars) => window.LHI18n.t(key, vars);
  const page = {
    built: false,
    users: null,
    keys: null,
    health: null,
    healthAt: null,
    audit: [],
    auditNext: null,
    healthTimer: null,
    auditTimer: null,
    roleChange: null, // {username, from, to}: a role picked in a row's select, awaiting its confirmation
    seq: 0, // bumped at stop: an answer for the previous session is dropped
  };

  function isAdmin() {
    const session = window.LH.state.session;
    return Boolean(session && session.role === "admin");
  }

  function $(id) {
    return document.getElementById(id);
  }

  function el(...args) {
    return window.LH.el(...args);
  }

  function roleName(role) {
    return t(`admin.role.${role}`);
  }

  function stateName(value) {
    return window.LHI18n.has(`admin.state.${value}`) ? t(`admin.state.${value}`) : String(value);
  }

  function stateBadge(value) {
    const good = value === "ok" || value === "ready";
    return el("span", { class: `badge ${good ? "text-bg-success" : "text-bg-danger"}`, text: stateName(value) });
  }

  function label(key, forId) {
    return el("label", { class: "form-label small mb-1", for: forId, "data-i18n": key, text: t(key) });
  }

  function roleSelect(id, { max = "admin", value } = {}) {
    const select = el("select", { class: "form-select form-select-sm", id, name: "role" });
    select.style.minWidth = "7.5rem"; // the role's name stays readable in a narrow table column
    for (const role of ROLES) {
      if (RANK[role] > RANK[max]) continue;
      const option = el("option", { value: role, text: roleName(role) });
      if (role === value) option.selected = true;
      select.append(option);
    }
    return select;
  }

  function field(key, input, hintKey) {
    const feedback = el("div", { class: "invalid-feedback", id: `${input.id}-error` });
    const hint = hintKey ? el("div", { class: "form-text", "data-i18n": hintKey, text: t(hintKey) }) : null;
    return el("div", { class: "col-12 col-sm-6 col-lg" }, label(key, input.id), input, feedback, hint);
  }

  function setFieldError(input, message) {
    input.classList.toggle("is-invalid", Boolean(message));
    const feedback = $(`${input.id}-error`);
    if (feedback) feedback.textContent = message || "";
  }

  function clearFieldErrors(form) {
    for (const input of form.querySelectorAll(".is-invalid")) setFieldError(input, "");
  }

  // A 422's details name the fields the API refused: shown at those fields, the rest at the form's line.
  function showApiFieldErrors(form, result, prefix) {
    const details = (result.data && Array.isArray(result.data.details) && result.data.details) || [];
    let placed = false;
    for (const detail of details) {
      const input = document.getElementById(`${prefix}-${detail.field}`);
      if (input && form.contains(input)) {
        setFieldError(input, detail.message);
        placed = true;
      }
    }
    return placed;
  }

  // A status or error line under a form or table: `key` and `vars` are kept, so a language switch says it again.
  const lines = new Map();

  function line(node, key, vars, kind) {
    if (key) lines.set(node.id, { key, vars, kind });
    else lines.delete(node.id);
    node.textContent = key ? t(key, vars) : "";
    node.className = `small mt-2 ${kind === "ok" ? "text-success" : "text-danger"}`;
    window.LH.show(node, Boolean(key));
  }

  function failed(result) {
    return { reason: window.LH.errorText(result) };
  }

  function card(titleKey, id, ...body) {
    return el(
      "div",
      { class: "card mb-3", id },
      el("div", { class: "card-header fw-semibold", "data-i18n": titleKey, text: t(titleKey) }),
      el("div", { class: "card-body" }, ...body),
    );
  }

  function table(id, headKeys) {
    const head = el("tr");
    for (const key of headKeys) head.append(el("th", { "data-i18n": key, text: t(key) }));
    return el(
      "div",
      { class: "table-responsive" },
      el("table", { class: "table table-sm align-middle mb-0" }, el("thead", {}, head), el("tbody", { id })),
    );
  }

  // --- building the page ----------------------------------------------------------------------------------------

  function build() {
    if (page.built) return;
    page.built = true;
    const view = $("admin-view");
    const session = window.LH.state.session;

    const userForm = el(
      "form",
      { id: "admin-user-form", class: "row g-2 align-items-start mb-3", novalidate: "" },
      field("admin.users.username", el("input", { class: "form-control form-control-sm", id: "admin-user-username",
        autocomplete: "off" })),
      field("admin.users.password", el("input", { class: "form-control form-control-sm", id: "admin-user-password",
        type: "password", autocomplete: "new-password" })),
      field("admin.users.role", roleSelect("admin-user-role", { value: "viewer" })),
      field("admin.users.account", el("input", { class: "form-control form-control-sm", id: "admin-user-account_id",
        autocomplete: "off" }), "admin.users.accountHint"),
      el("div", { class: "col-12 col-lg-auto pt-lg-4" },
        el("button", { class: "btn btn-sm btn-primary", type: "submit", id: "admin-user-create",
          "data-i18n": "admin.users.create", text: t("admin.users.create") })),
    );
    userForm.addEventListener("submit", createUser);

    const keyForm = el(
      "form",
      { id: "admin-key-form", class: "row g-2 align-items-start mb-3", novalidate: "" },
      field("admin.keys.name", el("input", { class: "form-control form-control-sm", id: "admin-key-name",
        autocomplete: "off", maxlength: "100" })),
      field("admin.keys.role", roleSelect("admin-key-role", { max: session.role, value: session.role }),
        "admin.keys.roleHint"),
      field("admin.keys.expires", el("input", { class: "form-control form-control-sm", id: "admin-key-expires_at",
        type: "datetime-local" }), "admin.keys.expiresHint"),
      el("div", { class: "col-12 col-lg-auto pt-lg-4" },
        el("button", { class: "btn btn-sm btn-primary", type: "submit", id: "admin-key-create",
          "data-i18n": "admin.keys.create", text: t("admin.keys.create") })),
    );
    keyForm.addEventListener("submit", createKey);
    const allKeys = el("input", { class: "form-check-input", type: "checkbox", id: "admin-keys-all" });
    allKeys.addEventListener("change", refreshKeys);

    const auditForm = el(
      "form",
      { id: "admin-audit-form", class: "row g-2 align-items-start mb-2", novalidate: "" },
      field("admin.audit.user", el("input", { class: "form-control form-control-sm", id: "admin-audit-user",
        autocomplete: "off" })),
      field("admin.audit.path", el("input", { class: "form-control form-control-sm", id: "admin-audit-path",
        placeholder: "/api/v1/orders", autocomplete: "off" })),
      field("admin.audit.since", el("input", { class: "form-control form-control-sm", id: "admin-audit-since",
        type: "datetime-local" })),
      el("div", { class: "col-12 col-lg-auto pt-lg-4" },
        el("button", { class: "btn btn-sm btn-outline-primary", type: "submit", id: "admin-audit-filter",
          "data-i18n": "admin.audit.filter", text: t("admin.audit.filter") })),
    );
    auditForm.addEventListener("submit", (event) => {
      event.preventDefault();
      refreshAudit();
    });

    const refreshButton = (id, handler) => {
      const button = el("button", { class: "btn btn-sm btn-outline-secondary", type: "button", id,
        "data-i18n": "common.refresh", text: t("common.refresh") });
      button.addEventListener("click", handler);
      return button;
    };
    const older = el("button", { class: "btn btn-sm btn-outline-secondary d-none mt-2", type: "button",
      id: "admin-audit-older", "data-i18n": "admin.audit.older", text: t("admin.audit.older") });
    older.addEventListener("click", () => refreshAudit({ more: true }));

    view.replaceChildren(
      el("h2", { class: "h5 mb-3", "data-i18n": "admin.title", text: t("admin.title") }),
      el("div", { class: "row" },
        el("div", { class: "col-12 col-xl-6" },
          card("admin.health", "admin-health-card",
            el("div", { class: "d-flex align-items-center gap-2 mb-2" }, refreshButton("admin-health-refresh",
              refreshHealth), el("span", { class: "small text-secondary", id: "admin-health-updated" })),
            table("admin-health", ["admin.health.service", "admin.health.healthz", "admin.health.readyz",
              "admin.health.checks", "admin.health.latency"]),
            el("div", { class: "d-none", id: "admin-health-error", role: "alert" }))),
        el("div", { class: "col-12 col-xl-6" },
          card("admin.users", "admin-users-card", userForm,
            el("div", { class: "d-none", id: "admin-user-result", role: "status" }),
            el("div", { class: "alert alert-warning d-none", id: "admin-role-confirm", role: "alertdialog" },
              el("div", { class: "mb-2", id: "admin-role-confirm-text" }),
              el("button", { class: "btn btn-warning btn-sm me-2", type: "button", id: "admin-role-yes",
                "data-i18n": "admin.users.roleYes", text: t("admin.users.roleYes") }),
              el("button", { class: "btn btn-outline-secondary btn-sm", type: "button", id: "admin-role-no",
                "data-i18n": "admin.users.roleNo", text: t("admin.users.roleNo") })),
            table("admin-users", ["admin.users.username", "admin.users.role", "admin.users.account",
              "admin.users.created", "admin.users.status", ""]),
            el("div", { class: "d-none", id: "admin-users-error", role: "alert" })))),
      card("admin.keys", "admin-keys-card", keyForm,
        el("div", { class: "alert alert-warning d-none", id: "admin-key-secret", role: "status" }),
        el("div", { class: "d-none", id: "admin-key-result", role: "alert" }),
        el("div", { class: "d-flex align-items-center gap-3 mb-2" },
          el("div", { class: "form-check mb-0" }, allKeys,
            el("label", { class: "form-check-label small", for: "admin-keys-all", "data-i18n": "admin.keys.all",
              text: t("admin.keys.all") })),
          refreshButton("admin-keys-refresh", refreshKeys)),
        table("admin-keys", ["admin.keys.id", "admin.keys.owner", "admin.keys.name", "admin.keys.role",
          "admin.users.created", "admin.keys.expires", "admin.keys.lastUsed", "admin.keys.status", ""]),
        el("div", { class: "d-none", id: "admin-keys-error", role: "alert" })),
      card("admin.audit", "admin-audit-card", auditForm,
        el("div", { class: "d-none", id: "admin-audit-error", role: "alert" }),
        table("admin-audit", ["admin.audit.time", "admin.audit.user", "admin.audit.via", "admin.audit.method",
          "admin.audit.path", "admin.audit.resource", "admin.audit.status", "admin.audit.request"]),
        older),
    );
    $("admin-role-yes").addEventListener("click", confirmRoleChange);
    $("admin-role-no").addEventListener("click", cancelRoleChange);
  }

  // --- users ----------------------------------------------------------------------------------------------------

  async function refreshUsers() {
    const seq = page.seq;
    const asked = (page.usersAsked = (page.usersAsked || 0) + 1);
    const result = await window.LH.api("/api/v1/users");
    // an earlier read answering after a later one (a user created meanwhile) does not put the older list back
    if (seq !== page.seq || asked !== page.usersAsked) return;
    if (!result.ok) {
      line($("admin-users-error"), "common.failed", failed(result));
      return;
    }
    line($("admin-users-error"), "");
    page.users = result.data;
    renderUsers();
  }

  function renderUsers() {
    const body = $("admin-users");
    if (!body || !page.users) return;
    const me = window.LH.state.session.username;
    body.replaceChildren();
    for (const user of page.users) {
      const self = user.username === me;
      const pending = page.roleChange && page.roleChange.username === user.username ? page.roleChange : null;
      const select = roleSelect(`admin-role-${user.username}`, { value: pending ? pending.to : user.role });
      select.disabled = self; // the API refuses an admin demoting themselves
      select.addEventListener("change", () => askRoleChange(user, select.value));
      const toggle = el("button", {
        class: `btn btn-sm ${user.disabled ? "btn-outline-success" : "btn-outline-danger"}`,
        type: "button",
        id: `admin-toggle-${user.username}`,
        text: t(user.disabled ? "admin.users.enable" : "admin.users.disable"),
      });
      toggle.disabled = self;
      toggle.addEventListener("click", () => updateUser(user.username, { disabled: !user.disabled }));
      body.append(
        el("tr", { "data-username": user.username },
          el("td", { text: user.username + (self ? t("admin.users.you") : "") }),
          el("td", {}, select),
          el("td", { text: user.account_id }),
          el("td", { class: "text-nowrap", text: window.LH.fmtTime(user.created_at) }),
          el("td", {}, el("span", { class: `badge ${user.disabled ? "text-bg-secondary" : "text-bg-success"}`,
            text: t(user.disabled ? "admin.users.disabled" : "admin.users.active") })),
          el("td", {}, toggle)),
      );
    }
  }

  // A role is changed only once confirmed: a select is too easy to change by a slip of the wheel or the finger.
  function askRoleChange(user, role) {
    page.roleChange = role === user.role ? null : { username: user.username, from: user.role, to: role };
    renderUsers(); // any other row's unconfirmed pick goes back to its role
    renderRoleConfirm();
  }

  function renderRoleConfirm() {
    const box = $("admin-role-confirm");
    if (!box) return;
    const change = page.roleChange;
    $("admin-role-confirm-text").textContent = change
      ? t("admin.users.roleConfirm", { name: change.username, from: roleName(change.from), to: roleName(change.to) })
      : "";
    window.LH.show(box, Boolean(change));
  }

  function confirmRoleChange() {
    const change = page.roleChange;
    page.roleChange = null;
    renderRoleConfirm();
    if (change) updateUser(change.username, { role: change.to });
  }

  function cancelRoleChange() {
    page.roleChange = null;
    renderRoleConfirm();
    renderUsers(); // the select shows the role the user has
  }

  async function updateUser(username, change) {
    page.usersAsked = (page.usersAsked || 0) + 1; // a list read still on its way would show the user as before
    const result = await window.LH.api(`/api/v1/users/${encodeURIComponent(username)}`, { method: "PATCH",
      json: change });
    if (!result.ok) {
      line($("admin-users-error"), "admin.error.action", { what: username, ...failed(result) });
      renderUsers(); // the select shows the role the user still has
      return;
    }
    page.users = page.users.map((u) => (u.username === username ? result.data : u));
    renderUsers();
    line($("admin-users-error"), "");
    line($("admin-user-result"), "admin.users.changed", { name: username }, "ok");
    auditSoon();
  }

  async function createUser(event) {
    event.preventDefault();
    const form = event.target;
    clearFieldErrors(form);
    line($("admin-user-result"), "");
    const username = $("admin-user-username");
    const password = $("admin-user-password");
    const account = $("admin-user-account_id");
    let ok = true;
    if (!USERNAME_RE.test(username.value)) {
      setFieldError(username, t("admin.error.username"));
      ok = false;
    }
    if (password.value.length < MIN_PASSWORD) {
      setFieldError(password, t("admin.error.password", { n: MIN_PASSWORD }));
      ok = false;
    }
    if (account.value && !USERNAME_RE.test(account.value)) {
      setFieldError(account, t("admin.error.account"));
      ok = false;
    }
    if (!ok) return;
    const body = { username: username.value, password: password.value, role: $("admin-user-role").value };
    if (account.value) body.account_id = account.value;
    const result = await window.LH.api("/api/v1/users", { method: "POST", json: body });
    if (!result.ok) {
      if (!showApiFieldErrors(form, result, "admin-user")) {
        line($("admin-user-result"), "admin.error.action", { what: t("admin.users.create"), ...failed(result) });
      }
      return;
    }
    form.reset();
    line($("admin-user-result"), "admin.users.created.ok", { name: result.data.username }, "ok");
    refreshUsers();
    auditSoon();
  }

  // --- API keys -------------------------------------------------------------------------------------------------

  async function refreshKeys() {
    const seq = page.seq;
    const all = $("admin-keys-all").checked;
    const asked = (page.keysAsked = (page.keysAsked || 0) + 1);
    const result = await window.LH.api(`/api/v1/api-keys${all ? "?all=true" : ""}`);
    if (seq !== page.seq || asked !== page.keysAsked) return; // (a later read, e.g. "all" ticked since, wins)
    if (!result.ok) {
      line($("admin-keys-error"), "common.failed", failed(result));
      return;
    }
    line($("admin-keys-error"), "");
    page.keys = result.data;
    renderKeys();
  }

  function keyState(key) {
    if (key.revoked_at) return "revoked";
    if (key.expires_at && new Date(key.expires_at).getTime() <= Date.now()) return "expired";
    return "active";
  }

  function renderKeys() {
    const body = $("admin-keys");
    if (!body || !page.keys) return;
    body.replaceChildren();
    for (const key of [...page.keys].reverse()) {
      const status = keyState(key);
      const revoke = el("button", { class: "btn btn-sm btn-outline-danger", type: "button",
        id: `admin-revoke-${key.key_id}`, text: t("admin.keys.revoke") });
      revoke.addEventListener("click", () => revokeKey(key.key_id));
      body.append(
        el("tr", { "data-key-id": key.key_id },
          el("td", {}, el("code", { text: key.key_id })),
          el("td", { text: key.username }),
          el("td", { text: key.name }),
          el("td", { text: roleName(key.role) }),
          el("td", { class: "text-nowrap", text: window.LH.fmtTime(key.created_at) }),
          el("td", { class: "text-nowrap", text: key.expires_at ? window.LH.fmtTime(key.expires_at)
            : t("admin.keys.never") }),
          el("td", { class: "text-nowrap", text: window.LH.fmtTime(key.last_used_at) }),
          el("td", {}, el("span", { class: `badge ${status === "active" ? "text-bg-success" : "text-bg-secondary"}`,
            text: t(`admin.keys.${status}`) })),
          el("td", {}, status === "revoked" ? null : revoke)),
      );
    }
  }

  async function createKey(event) {
    event.preventDefault();
    const form = event.target;
    clearFieldErrors(form);
    line($("admin-key-result"), "");
    window.LH.show($("admin-key-secret"), false);
    const name = $("admin-key-name");
    const expires = $("admin-key-expires_at");
    let ok = true;
    if (!name.value.trim() || name.value.length > 100) {
      setFieldError(name, t("admin.error.name"));
      ok = false;
    }
    let expiresAt = null;
    if (expires.value) {
      const when = new Date(expires.value); // datetime-local: the browser's local time
      if (Number.isNaN(when.getTime()) || when.getTime() <= Date.now()) {
        setFieldError(expires, t("admin.error.expires"));
        ok = false;
      } else {
        expiresAt = when.toISOString();
      }
    }
    if (!ok) return;
    const body = { name: name.value.trim(), role: $("admin-key-role").value };
    if (expiresAt) body.expires_at = expiresAt;
    const result = await window.LH.api("/api/v1/api-keys", { method: "POST", json: body });
    if (!result.ok) {
      if (!showApiFieldErrors(form, result, "admin-key")) {
        line($("admin-key-result"), "admin.error.action", { what: t("admin.keys.create"), ...failed(result) });
      }
      return;
    }
    form.reset();
    $("admin-key-role").value = window.LH.state.session.role;
    const secret = $("admin-key-secret");
    secret.replaceChildren(
      el("div", { class: "small", "data-i18n": "admin.keys.secret", text: t("admin.keys.secret") }),
      el("code", { class: "user-select-all text-break", id: "admin-key-secret-value", text: result.data.api_key }),
    );
    window.LH.show(secret, true);
    refreshKeys();
    auditSoon();
  }

  async function revokeKey(keyId) {
    page.keysAsked = (page.keysAsked || 0) + 1; // a list read still on its way would show the key as not revoked
    const result = await window.LH.api(`/api/v1/api-keys/${encodeURIComponent(keyId)}`, { method: "DELETE" });
    if (!result.ok) {
      line($("admin-keys-error"), "admin.error.action", { what: keyId, ...failed(result) });
      return;
    }
    page.keys = page.keys.map((k) => (k.key_id === keyId ? result.data : k));
    renderKeys();
    auditSoon();
  }

  // --- services' health -----------------------------------------------------------------------------------------

  async function refreshHealth() {
    const seq = page.seq;
    clearTimeout(page.healthTimer);
    const result = await window.LH.api("/api/v1/admin/services");
    if (seq !== page.seq) return;
    if (!$("admin-view").classList.contains("d-none")) {
      page.healthTimer = setTimeout(refreshHealth, HEALTH_REFRESH_MS);
    }
    if (!result.ok) {
      // The table keeps the last answer, marked by its time; the failure is said, not hidden.
      line($("admin-health-error"), "common.failed", failed(result));
      return;
    }
    line($("admin-health-error"), "");
    page.health = result.data;
    page.healthAt = new Date();
    renderHealth();
  }

  function renderHealth() {
    const body = $("admin-health");
    if (!body || !page.health) return;
    body.replaceChildren();
    for (const service of page.health) {
      const checks = el("span", { class: "small" });
      for (const [name, value] of Object.entries(service.checks)) {
        checks.append(el("span", { class: `me-2 ${value === "ok" ? "text-success" : "text-danger"}`,
          text: `${name}: ${stateName(value)}` }));
      }
      body.append(
        el("tr", { "data-service": service.service },
          el("td", { class: "fw-semibold", text: service.service }),
          el("td", {}, stateBadge(service.healthz)),
          el("td", {}, stateBadge(service.readyz)),
          el("td", {}, Object.keys(service.checks).length ? checks : "—"),
          el("td", { class: "text-end", text: service.latency_ms === null ? "—" : service.latency_ms.toFixed(1) })),
      );
    }
    $("admin-health-updated").textContent = t("admin.health.updated", { time: window.LH.fmtTime(page.healthAt) });
  }

  // --- audit log ------------------------------------------------------------------------------------------------

  async function refreshAudit({ more = false } = {}) {
    const seq = page.seq;
    const form = $("admin-audit-form");
    clearFieldErrors(form);
    const params = new URLSearchParams({ limit: String(AUDIT_PAGE) });
    const user = $("admin-audit-user").value.trim();
    const path = $("admin-audit-path").value.trim();
    const since = $("admin-audit-since").value;
    if (user) {
      if (!USERNAME_RE.test(user)) {
        setFieldError($("admin-audit-user"), t("admin.error.username"));
        return;
      }
      params.set("user", user);
    }
    if (path) {
      if (!path.startsWith("/")) {
        setFieldError($("admin-audit-path"), t("admin.error.path"));
        return;
      }
      params.set("path_prefix", path);
    }
    if (since) params.set("since", new Date(since).toISOString());
    if (more && page.auditNext) params.set("before_id", String(page.auditNext));
    const result = await window.LH.api(`/api/v1/audit?${params}`);
    if (seq !== page.seq) return;
    if (!result.ok) {
      line($("admin-audit-error"), "common.failed", failed(result));
      return;
    }
    line($("admin-audit-error"), "");
    page.audit = more ? page.audit.concat(result.data.entries) : result.data.entries;
    page.auditNext = result.data.next_before_id;
    renderAudit();
  }

  function renderAudit() {
    const body = $("admin-audit");
    if (!body) return;
    body.replaceChildren();
    if (!page.audit.length) {
      body.append(el("tr", {}, el("td", { colspan: "8", class: "text-secondary", text: t("admin.audit.empty") })));
    }
    for (const entry of page.audit) {
      const failed = entry.status >= 400;
      body.append(
        el("tr", { "data-audit-id": String(entry.id) },
          el("td", { class: "text-nowrap", text: window.LH.fmtTime(entry.at) }),
          el("td", { text: entry.username || t("admin.audit.anonymous") }),
          el("td", { text: entry.via ? t(`admin.via.${entry.via}`) + (entry.key_id ? ` ${entry.key_id}` : "")
            : "—" }),
          el("td", {}, el("code", { text: entry.method })),
          el("td", { class: "text-break", text: entry.path }),
          el("td", { class: "text-break", text: window.LH.fmt(entry.resource_id) }),
          el("td", { class: failed ? "text-danger fw-semibold" : "", text: String(entry.status) }),
          el("td", { class: "small text-secondary text-break", text: entry.request_id })),
      );
    }
    window.LH.show($("admin-audit-older"), Boolean(page.auditNext));
  }

  // The gateway writes its audit entries in the background (within about a second): the one of an action just taken
  // is read a moment later.
  function auditSoon() {
    clearTimeout(page.auditTimer);
    page.auditTimer = setTimeout(refreshAudit, 1200);
  }

  function refreshAll() {
    refreshHealth();
    refreshUsers();
    refreshKeys();
    auditSoon();
  }

  window.addEventListener("lh:lang", () => {
    if (!page.built) return;
    for (const select of document.querySelectorAll("#admin-view select[name=role]")) {
      for (const option of select.options) option.textContent = roleName(option.value);
    }
    for (const [id, { key, vars, kind }] of lines) {
      const node = $(id);
      if (node) line(node, key, vars, kind);
    }
    renderUsers();
    renderRoleConfirm();
    renderKeys();
    renderHealth();
    renderAudit();
  });

  window.LHPages.admin = {
    available: isAdmin,
    start() {
      if (isAdmin()) build();
    },
    show() {
      if (!isAdmin()) return;
      build();
      refreshAll();
    },
    hide() {
      clearTimeout(page.healthTimer);
    },
    stop() {
      page.seq += 1;
      clearTimeout(page.healthTimer);
      clearTimeout(page.auditTimer);
      page.built = false;
      page.users = page.keys = page.health = null;
      page.audit = [];
      page.auditNext = null;
      page.roleChange = null;
      lines.clear();
      $("admin-view").replaceChildren();
    },
  };
})();
