// The taskloop feedback page: sign in, pick an answer (or ask for one), rate it.
//
// No framework and no external assets (the service's CSP is "default-src 'self'").
// Every piece of data goes into the DOM through textContent, never innerHTML.
"use strict";

(() => {
  // The API lives next to /ui/ (also behind a path prefix): /ui/ -> ../v1/...
  const ROOT = new URL("../", document.baseURI);
  const SCOPES = "tasks:run feedback:write";
  const STORE_KEY = "taskloop.session";
  const STARS = [1, 2, 3, 4, 5];
  const FIELD_LABELS = {
    question: "Question",
    context: "Context",
    document: "Document",
    source: "Source",
    source_lang: "From",
    target_lang: "To",
    prompt: "Prompt",
    completion: "Completion",
  };
  const MAIN_FIELD = ["question", "document", "source", "text", "prompt", "dialogue"];

  const state = {
    session: null, // {token, username, scopes: [], expires: ms since epoch}
    items: [], // the queue as last loaded
    rated: new Set(), // keys of queue items rated in this page's life
    selected: null, // key of the selected queue item
  };
  let formCounter = 0;

  const $ = (id) => document.getElementById(id);

  // -- DOM helpers ------------------------------------------------------------------------

  /** An element with attributes and children; strings become text nodes (escaped). */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "text") node.textContent = String(value);
      else if (name === "class") node.className = value;
      else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  // -- messages -------------------------------------------------------------------------

  function notify(text) {
    hideProblem();
    const box = $("notice");
    box.textContent = text;
    box.classList.toggle("shown", Boolean(text));
  }

  /** Show an error: what went wrong and, when the API says, what to do. */
  function showProblem(message, hint) {
    const box = $("problem");
    clear(box);
    box.append(el("strong", { text: message }));
    if (hint) box.append(el("span", { class: "hint", text: hint }));
    box.hidden = false;
    $("notice").textContent = "";
    $("notice").classList.remove("shown");
  }

  function hideProblem() {
    const box = $("problem");
    clear(box);
    box.hidden = true;
  }

  // -- API --------------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, code, message, hint) {
      super(message);
      this.status = status;
      this.code = code;
      this.hint = hint;
    }
  }

  /** The {code, message, hint} of an error response (FastAPI's {detail} understood too). */
  async function problemOf(resp) {
    let body = null;
    try {
      body = await resp.json();
    } catch {
      body = null;
    }
    let message = body && typeof body.message === "string" ? body.message : null;
    // The token endpoint answers as RFC 6749 says: {error, error_description}.
    if (!message && body && typeof body.error_description === "string") {
      message = body.error_description;
    }
    if (!message && body && typeof body.detail === "string") message = body.detail;
    if (!message && body && Array.isArray(body.detail) && body.detail[0]) {
      const first = body.detail[0];
      message = `${(first.loc || []).join(".")}: ${first.msg}`;
    }
    let hint = body && typeof body.hint === "string" ? body.hint : null;
    const retry = resp.headers.get("Retry-After");
    if (!hint && retry) hint = `try again in ${retry} s`;
    return new ApiError(
      resp.status,
      (body && (body.code || body.error)) || `http.${resp.status}`,
      message || `the service answered ${resp.status} ${resp.statusText}`.trim(),
      hint,
    );
  }

  /**
   * Call the API. `json` is sent as JSON, `form` as a urlencoded form. A 401 on a signed-in
   * call means the session is over: back to the sign-in form with the API's message.
   */
  async function api(method, path, { json, form, auth = true } = {}) {
    const headers = { Accept: "application/json" };
    let body;
    if (json !== undefined) {
      headers["Content-Type"] = "application/json";
      body = JSON.stringify(json);
    } else if (form !== undefined) {
      body = new URLSearchParams(form);
    }
    if (auth) {
      if (!state.session || Date.now() >= state.session.expires) {
        endSession("Your session has expired.", "Sign in again to go on.");
        const expired = new ApiError(401, "serve.auth", "Your session has expired.", null);
        expired.handled = true;
        throw expired;
      }
      headers.Authorization = `Bearer ${state.session.token}`;
    }
    let resp;
    try {
      resp = await fetch(new URL(path, ROOT), { method, headers, body, credentials: "omit" });
    } catch {
      throw new ApiError(
        0,
        "serve.unreachable",
        "Cannot reach the taskloop service.",
        "Check that it is running, then try again.",
      );
    }
    if (!resp.ok) {
      const problem = await problemOf(resp);
      if (auth && resp.status === 401) {
        endSession(`Your session has ended: ${problem.message}`, "Sign in again to go on.");
        problem.handled = true;
      }
      throw problem;
    }
    return resp.status === 204 ? null : resp.json();
  }

  function report(error) {
    if (error && error.handled) return;
    if (error instanceof ApiError) showProblem(error.message, error.hint);
    else showProblem(`Something went wrong in the page: ${error}`, "Reload the page.");
  }

  async function busy(button, work) {
    button.disabled = true;
    button.setAttribute("aria-busy", "true");
    try {
      return await work();
    } finally {
      button.disabled = false;
      button.removeAttribute("aria-busy");
    }
  }

  // -- session ----------------------------------------------------------------------------

  function saveSession() {
    try {
      if (state.session) sessionStorage.setItem(STORE_KEY, JSON.stringify(state.session));
      else sessionStorage.removeItem(STORE_KEY);
    } catch {
      // Storage refused (private mode): the session lives in memory only.
    }
  }

  function loadSession() {
    try {
      const saved = JSON.parse(sessionStorage.getItem(STORE_KEY) || "null");
      if (saved && saved.token && saved.expires > Date.now()) return saved;
    } catch {
      // A broken entry: ignore it.
    }
    return null;
  }

  function can(scope) {
    return Boolean(state.session && state.session.scopes.includes(scope));
  }

  /** A token for the page's scopes; an account holding only one of them gets that one. */
  async function requestToken(username, password) {
    const tries = [SCOPES, ...SCOPES.split(" ")];
    for (const [index, scope] of tries.entries()) {
      try {
        return await api("POST", "v1/auth/token", {
          form: { grant_type: "password", username, password, scope },
          auth: false,
        });
      } catch (error) {
        const last = index === tries.length - 1;
        if (last || !(error instanceof ApiError) || error.code !== "invalid_scope") throw error;
      }
    }
    throw new ApiError(400, "invalid_scope", "no scope to sign in with", null);
  }

  async function signIn(event) {
    event.preventDefault();
    const username = $("username").value.trim();
    const password = $("password").value;
    if (!username || !password) {
      showProblem("Enter your username and password.", null);
      (username ? $("password") : $("username")).focus();
      return;
    }
    await busy($("signin-button"), async () => {
      try {
        const token = await requestToken(username, password);
        const scopes = String(token.scope || "").split(/\s+/).filter(Boolean);
        const seconds = Number(token.expires_in) || 3600;
        state.session = {
          token: token.access_token,
          username,
          scopes,
          // A little early, so that a call never goes out with a token about to expire.
          expires: Date.now() + Math.max(1, seconds - 5) * 1000,
        };
        saveSession();
        $("password").value = "";
        notify(`Signed in as ${username}.`);
        startSession();
      } catch (error) {
        if (error instanceof ApiError && (error.status === 400 || error.status === 401)) {
          showProblem(`Sign-in failed: ${error.message}`, error.hint || "Check the username and password.");
        } else {
          report(error);
        }
        $("password").select();
        $("password").focus();
      }
    });
  }

  function startSession() {
    $("who-name").textContent = state.session.username;
    $("who").hidden = false;
    $("signin").hidden = true;
    $("app").hidden = false;
    $("view-ask").hidden = !can("tasks:run");
    $("view-rate").hidden = !can("feedback:write");
    if (!can("feedback:write")) {
      showProblem(
        "This account cannot rate answers.",
        "It needs the scope feedback:write; ask an administrator.",
      );
    }
    showView(can("feedback:write") || !can("tasks:run") ? "rate" : "ask");
    loadQueue();
    // The sign-in form is gone: start keyboard and screen-reader users at the content.
    $("main").focus();
  }

  /** Back to the sign-in form; with a reason, say why (an expired session, a sign-out). */
  function endSession(reason, hint) {
    state.session = null;
    state.items = [];
    state.selected = null;
    state.rated.clear();
    saveSession();
    clear($("queue-list"));
    clear($("ask-result"));
    resetPanel();
    $("who").hidden = true;
    $("app").hidden = true;
    $("signin").hidden = false;
    if (reason && hint !== undefined) showProblem(reason, hint);
    else if (reason) notify(reason);
    $("username").focus();
  }

  // -- views ------------------------------------------------------------------------------

  function showView(name) {
    for (const view of ["rate", "ask"]) {
      $(view).hidden = view !== name;
      $(`view-${view}`).setAttribute("aria-pressed", String(view === name));
    }
  }

  // -- the queue ------------------------------------------------------------------------

  function keyOf(item, index) {
    return item.prediction_id
      ? `${item.prediction_id}|${item.other_prediction_id || ""}`
      : `input-${index}`;
  }

  function preview(input) {
    const field = MAIN_FIELD.find((name) => typeof input[name] === "string") ||
      Object.keys(input).find((name) => typeof input[name] === "string");
    const text = field ? input[field] : JSON.stringify(input);
    const flat = text.replace(/\s+/g, " ").trim();
    return flat.length > 90 ? `${flat.slice(0, 89)}…` : flat;
  }

  async function loadQueue() {
    if (!can("feedback:write")) return;
    try {
      const items = await busy($("queue-refresh"), () => api("GET", "v1/feedback/queue?limit=50"));
      // Queued for labelling first (the service sorts so; keep it so whatever the order),
      // and each answer (or pair) once: a queued answer is also a recent one.
      const seen = new Set();
      state.items = items
        .map((item, index) => ({ ...item, key: keyOf(item, index) }))
        .sort((a, b) => Number(Boolean(b.queued)) - Number(Boolean(a.queued)))
        .filter((item) => !seen.has(item.key) && seen.add(item.key));
      renderQueue();
    } catch (error) {
      report(error);
    }
  }

  function renderQueue() {
    const list = $("queue-list");
    clear(list);
    $("queue-empty").hidden = state.items.length > 0;
    for (const item of state.items) {
      const badges = [];
      if (item.queued) badges.push(el("span", { class: "badge need", text: "needs a label" }));
      if (item.other_prediction_id) badges.push(el("span", { class: "badge pair", text: "A vs B" }));
      if (state.rated.has(item.key)) badges.push(el("span", { class: "badge done", text: "rated" }));
      const button = el(
        "button",
        {
          type: "button",
          class: "queue-item",
          "data-key": item.key,
          "aria-current": state.selected === item.key ? "true" : null,
          onclick: () => selectItem(item.key),
        },
        el("span", { class: "line" }, el("span", { class: "task", text: item.task }), badges),
        el("span", { class: "preview", text: preview(item.input || {}) }),
        item.reason ? el("span", { class: "reason", text: item.reason }) : null,
      );
      list.append(el("li", { class: item.queued ? "queued" : null }, button));
    }
  }

  function selectItem(key) {
    const item = state.items.find((candidate) => candidate.key === key);
    if (!item) return;
    state.selected = key;
    for (const button of $("queue-list").querySelectorAll(".queue-item")) {
      if (button.dataset.key === key) button.setAttribute("aria-current", "true");
      else button.removeAttribute("aria-current");
    }
    hideProblem();
    const panel = $("rate-panel");
    clear(panel);
    if (item.prediction_id) {
      panel.append(ratingForm(item, () => markRated(item.key)));
    } else {
      panel.append(unansweredPanel(item));
    }
  }

  function markRated(key) {
    state.rated.add(key);
    const button = $("queue-list").querySelector(`.queue-item[data-key="${CSS.escape(key)}"]`);
    if (button && !button.querySelector(".badge.done")) {
      button.querySelector(".line").append(el("span", { class: "badge done", text: "rated" }));
    }
  }

  function resetPanel() {
    const panel = $("rate-panel");
    clear(panel);
    panel.append(el("p", { class: "muted", text: "Pick an answer from the list to rate it." }));
  }

  /** A queued input with no answer yet: show it, offer to ask the model for one. */
  function unansweredPanel(item) {
    const box = el("div", { class: "rating" });
    box.append(el("h3", { text: `${item.task}: needs an answer first` }), inputList(item.input));
    if (item.reason) box.append(el("p", { class: "reason", text: item.reason }));
    if (can("tasks:run")) {
      const button = el("button", { type: "button", text: "Get an answer" });
      button.addEventListener("click", () =>
        busy(button, async () => {
          try {
            const result = await api("POST", `v1/tasks/${encodeURIComponent(item.task)}`, {
              json: item.input,
            });
            const panel = $("rate-panel");
            clear(panel);
            panel.append(answerView(result), ratingForm(
              { ...result, input: item.input },
              () => markRated(item.key),
            ));
          } catch (error) {
            report(error);
          }
        }),
      );
      box.append(el("p", {}, button));
    }
    return box;
  }

  // -- showing inputs and answers ---------------------------------------------------------

  function inputList(input) {
    const list = el("dl", { class: "input" });
    for (const [name, value] of Object.entries(input || {})) {
      const text = typeof value === "string" ? value : JSON.stringify(value);
      const long = text.length > 80 || text.includes("\n") || name === "prompt";
      list.append(
        el("dt", { text: FIELD_LABELS[name] || name }),
        el("dd", {}, long ? el("pre", { class: "text", text }) : text),
      );
    }
    return list;
  }

  function answerText(output) {
    return output === null || output === undefined || output === ""
      ? el("p", { class: "muted", text: "(no answer)" })
      : el("pre", { class: "answer", text: output });
  }

  /** The result of POST /v1/tasks/{task}: status, model, answer and every check. */
  function answerView(result) {
    const box = el("section", { class: "result card", "aria-label": "Answer", tabindex: "-1" });
    const status = String(result.status || "unknown");
    box.append(
      el(
        "p",
        { class: "meta" },
        "Status: ",
        el("span", { class: `status status-${status.replace(/[^a-z]/g, "")}`, text: status }),
        result.model ? ` · model ${result.model}` : "",
        typeof result.latency_ms === "number" ? ` · ${Math.round(result.latency_ms)} ms` : "",
      ),
      el("h3", { text: "Answer" }),
      answerText(result.output),
    );
    const checks = result.checks || [];
    if (checks.length) {
      const rows = checks.map((check) =>
        el(
          "tr",
          { class: check.passed ? "passed" : "failed" },
          el("td", { text: check.name }),
          el("td", { class: "outcome", text: check.passed ? "✓ passed" : "✗ failed" }),
          el("td", { text: check.severity || "" }),
          el("td", { text: check.detail || "" }),
        ),
      );
      box.append(
        el(
          "table",
          { class: "checks" },
          el("caption", { text: "Checks" }),
          el(
            "thead",
            {},
            el(
              "tr",
              {},
              ["Check", "Result", "Severity", "Detail"].map((h) => el("th", { scope: "col", text: h })),
            ),
          ),
          el("tbody", {}, rows),
        ),
      );
    } else {
      box.append(el("p", { class: "muted", text: "No checks ran for this answer." }));
    }
    const scores = Object.entries(result.scores || {});
    if (scores.length) {
      box.append(
        el(
          "p",
          { class: "scores" },
          "Scores: ",
          scores.map(([name, value]) => `${name} ${Number(value).toFixed(3)}`).join(" · "),
        ),
      );
    }
    return box;
  }

  // -- rating forms -----------------------------------------------------------------------

  function commentField(n) {
    const id = `comment-${n}`;
    const area = el("textarea", { id, rows: 3, maxlength: 4000, class: "comment" });
    area.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
        event.preventDefault();
        area.form.requestSubmit();
      }
    });
    return el("p", {}, el("label", { for: id, text: "Comment (optional)" }), area);
  }

  /**
   * The rating form for one answer, or for two answers to the same input (A vs B).
   * `compact`: the input and the answer are already on the page (the Ask view).
   */
  function ratingForm(item, onSaved, compact = false) {
    formCounter += 1;
    return item.other_prediction_id
      ? pairForm(item, formCounter, onSaved)
      : singleForm(item, formCounter, onSaved, compact);
  }

  function singleForm(item, n, onSaved, compact) {
    const form = el("form", { class: "rating", "data-kind": "single", "aria-labelledby": `rate-${n}` });
    form.append(el("h3", { id: `rate-${n}`, text: `Rate this ${item.task} answer` }));
    if (item.queued) form.append(el("p", { class: "badge need", text: "needs a label" }));
    if (item.reason) form.append(el("p", { class: "reason", text: item.reason }));
    if (!compact) {
      form.append(el("h4", { text: "Input" }), inputList(item.input));
      // An answer fresh from POST /v1/tasks is shown above the form, with its checks.
      if (!("checks" in item)) form.append(el("h4", { text: "Answer" }), answerText(item.output));
    }

    const thumbs = ["up", "down"].map((value) => {
      const button = el(
        "button",
        { type: "button", class: `thumb thumb-${value}`, "aria-pressed": "false", "data-thumbs": value },
        el("span", { "aria-hidden": "true", class: "icon", text: value === "up" ? "▲" : "▼" }),
        ` Thumbs ${value}`,
      );
      button.addEventListener("click", () => {
        const pressed = button.getAttribute("aria-pressed") !== "true";
        for (const other of form.querySelectorAll(".thumb")) other.setAttribute("aria-pressed", "false");
        button.setAttribute("aria-pressed", String(pressed));
      });
      return button;
    });
    form.append(el("div", { class: "thumbs", role: "group", "aria-label": "Thumbs" }, thumbs));

    const name = `score-${n}`;
    const stars = el("fieldset", { class: "stars" }, el("legend", { text: "Score (1 to 5 stars)" }));
    const row = el("div", { class: "star-row" });
    for (const value of STARS) {
      const input = el("input", {
        type: "radio",
        name,
        value,
        "aria-label": value === 1 ? "1 star" : `${value} stars`,
      });
      input.addEventListener("change", () => paintStars(form));
      input.addEventListener("keydown", (event) => {
        // Enter on a star saves the rating (radios do not submit a form by themselves).
        if (event.key === "Enter") {
          event.preventDefault();
          form.requestSubmit();
        }
      });
      row.append(el("label", { class: "star", "data-value": value }, input,
        el("span", { "aria-hidden": "true", text: "★" })));
    }
    const clearStars = el("button", { type: "button", class: "link", text: "Clear score" });
    clearStars.addEventListener("click", () => {
      for (const input of form.querySelectorAll(".stars input")) input.checked = false;
      paintStars(form);
    });
    row.append(el("output", { class: "star-value", "aria-live": "polite" }), clearStars);
    stars.append(row);
    form.append(stars, commentField(n));

    const save = el("button", { type: "submit", class: "primary", text: "Save rating" });
    form.append(el("p", {}, save));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      busy(save, () => saveSingle(form, item, onSaved));
    });
    return form;
  }

  function paintStars(form) {
    const checked = form.querySelector(".stars input:checked");
    const value = checked ? Number(checked.value) : 0;
    for (const label of form.querySelectorAll(".star")) {
      label.classList.toggle("lit", Number(label.dataset.value) <= value);
    }
    form.querySelector(".star-value").textContent = value ? `${value} of 5` : "";
  }

  /** One record per kind the person gave (thumbs, score); the comment rides on the first. */
  async function saveSingle(form, item, onSaved) {
    const pressed = form.querySelector(".thumb[aria-pressed='true']");
    const checked = form.querySelector(".stars input:checked");
    const comment = form.querySelector(".comment").value.trim();
    const records = [];
    if (pressed) records.push({ kind: "thumbs", thumbs: pressed.dataset.thumbs });
    if (checked) records.push({ kind: "score", score: Number(checked.value) });
    if (!records.length && comment) records.push({ kind: "comment" });
    if (!records.length) {
      showProblem("Nothing to save yet.", "Choose thumbs up or down, a score, or write a comment.");
      form.querySelector(".thumb").focus();
      return;
    }
    if (comment) records[0].comment = comment;
    const saved = [];
    try {
      for (const record of records) {
        const stored = await api("POST", "v1/feedback", {
          json: { prediction_id: item.prediction_id, ...record },
        });
        saved.push(stored.id);
      }
    } catch (error) {
      report(error);
      if (saved.length) notifySaved(saved, " (the rest was not saved)");
      return;
    }
    notifySaved(saved, "");
    resetSingle(form);
    onSaved();
  }

  function notifySaved(ids, suffix) {
    const list = ids.map((id) => `#${id}`);
    const text = list.length === 1 ? `Saved rating ${list[0]}` : `Saved ratings ${list.join(" and ")}`;
    notify(`${text}${suffix}.`);
  }

  function resetSingle(form) {
    for (const button of form.querySelectorAll(".thumb")) button.setAttribute("aria-pressed", "false");
    for (const input of form.querySelectorAll(".stars input")) input.checked = false;
    form.querySelector(".comment").value = "";
    paintStars(form);
  }

  function pairForm(item, n, onSaved) {
    const form = el("form", { class: "rating", "data-kind": "pair", "aria-labelledby": `rate-${n}` });
    form.append(el("h3", { id: `rate-${n}`, text: `Which ${item.task} answer is better?` }));
    if (item.queued) form.append(el("p", { class: "badge need", text: "needs a label" }));
    if (item.reason) form.append(el("p", { class: "reason", text: item.reason }));
    form.append(el("h4", { text: "Input" }), inputList(item.input));
    form.append(
      el(
        "div",
        { class: "pair" },
        el("section", { "aria-label": "Answer A" }, el("h4", { text: "Answer A" }), answerText(item.output)),
        el("section", { "aria-label": "Answer B" }, el("h4", { text: "Answer B" }), answerText(item.other_output)),
      ),
    );
    const name = `preferred-${n}`;
    const choices = [
      ["a", "A is better"],
      ["b", "B is better"],
      ["tie", "Tie"],
    ].map(([value, text]) => {
      const id = `${name}-${value}`;
      const input = el("input", { type: "radio", id, name, value });
      input.addEventListener("keydown", (event) => {
        if (event.key === "Enter") {
          event.preventDefault();
          form.requestSubmit();
        }
      });
      return el("span", { class: "choice" }, input, el("label", { for: id, text }));
    });
    form.append(
      el("fieldset", { class: "choices" }, el("legend", { text: "Which answer is better?" }), choices),
      commentField(n),
    );
    const save = el("button", { type: "submit", class: "primary", text: "Save choice" });
    form.append(el("p", {}, save));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      busy(save, () => savePair(form, item, onSaved));
    });
    return form;
  }

  async function savePair(form, item, onSaved) {
    const checked = form.querySelector(".choices input:checked");
    if (!checked) {
      showProblem("Nothing to save yet.", "Choose A, B or tie.");
      form.querySelector(".choices input").focus();
      return;
    }
    const comment = form.querySelector(".comment").value.trim();
    const body = {
      prediction_id: item.prediction_id,
      kind: "preference",
      other_prediction_id: item.other_prediction_id,
      preferred: checked.value,
    };
    if (comment) body.comment = comment;
    try {
      const stored = await api("POST", "v1/feedback", { json: body });
      notifySaved([stored.id], "");
    } catch (error) {
      report(error);
      return;
    }
    checked.checked = false;
    form.querySelector(".comment").value = "";
    onSaved();
  }

  // -- the Ask view -----------------------------------------------------------------------

  function activeFields() {
    const task = $("ask-task").value;
    return document.querySelector(`.task-fields[data-task="${task}"]`);
  }

  function switchTask() {
    const task = $("ask-task").value;
    for (const set of document.querySelectorAll(".task-fields")) {
      const active = set.dataset.task === task;
      set.hidden = !active;
      set.disabled = !active;
    }
  }

  async function ask(event) {
    event.preventDefault();
    const task = $("ask-task").value;
    const row = {};
    for (const field of activeFields().querySelectorAll("[data-field]")) {
      const value = field.value;
      if (field.required && !value.trim()) {
        const label = document.querySelector(`label[for="${field.id}"]`);
        showProblem(`${label ? label.textContent : field.dataset.field} is required.`, null);
        field.focus();
        return;
      }
      if (value.trim()) row[field.dataset.field] = value;
    }
    const result = $("ask-result");
    await busy($("ask-button"), async () => {
      try {
        const answer = await api("POST", `v1/tasks/${task}`, { json: row });
        hideProblem();
        clear(result);
        result.append(answerView(answer));
        if (can("feedback:write")) {
          result.append(el("div", { class: "card" }, ratingForm({ ...answer, input: row }, () => {}, true)));
        }
        notify(`Answered (${answer.status}).`);
        // Move to the answer so that a screen reader reads it next.
        result.querySelector(".result").focus();
      } catch (error) {
        report(error);
      }
    });
  }

  // -- keyboard shortcuts -----------------------------------------------------------------

  function visibleForm() {
    const view = $("rate").hidden ? $("ask-result") : $("rate-panel");
    return view.querySelector("form.rating");
  }

  function typing(target) {
    if (!(target instanceof HTMLElement)) return false;
    if (target.isContentEditable || target.tagName === "TEXTAREA" || target.tagName === "SELECT") {
      return true;
    }
    return target.tagName === "INPUT" && !["radio", "checkbox", "button", "submit"].includes(target.type);
  }

  function shortcut(event) {
    if (event.ctrlKey || event.metaKey || event.altKey || typing(event.target)) return;
    if (!state.session) return;
    const form = visibleForm();
    if (!form) return;
    const key = event.key.toLowerCase();
    let control = null;
    if (form.dataset.kind === "single") {
      if (key === "+" || key === "=") control = form.querySelector(".thumb-up");
      else if (key === "-") control = form.querySelector(".thumb-down");
      else if (/^[1-5]$/.test(key)) control = form.querySelector(`.stars input[value="${key}"]`);
    } else {
      const value = { a: "a", b: "b", t: "tie" }[key];
      if (value) control = form.querySelector(`.choices input[value="${value}"]`);
    }
    if (!control) return;
    event.preventDefault();
    control.click();
  }

  // -- start ------------------------------------------------------------------------------

  function init() {
    $("signin-form").addEventListener("submit", signIn);
    $("sign-out").addEventListener("click", () => endSession("Signed out."));
    $("view-rate").addEventListener("click", () => {
      showView("rate");
      loadQueue();
    });
    $("view-ask").addEventListener("click", () => showView("ask"));
    $("queue-refresh").addEventListener("click", loadQueue);
    $("ask-task").addEventListener("change", switchTask);
    $("ask-form").addEventListener("submit", ask);
    document.addEventListener("keydown", shortcut);
    switchTask();
    state.session = loadSession();
    if (state.session) startSession();
    else $("username").focus();
  }

  init();
})();
