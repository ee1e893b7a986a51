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
    },
  });

  document.documentElement.lang = HTML_LANG[lang];
  document.addEventListener("DOMContentLoaded", () => apply());

  return {
    add, t, has, apply, setLang,
    get lang() {
      return lang;
    },
    LANGS,
  };
})();
