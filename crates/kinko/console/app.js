// Kinko console: talks only to the local `kinko console` process (same origin). No framework,
// no third-party code, no inline script (the Content-Security-Policy forbids it).
"use strict";

const token = new URLSearchParams(location.search).get("t") || "";
const $ = (id) => document.getElementById(id);

function b64url(bytes) {
  let s = "";
  for (const b of new Uint8Array(bytes)) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}
function fromB64url(s) {
  const b = atob(s.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((s.length + 3) % 4));
  return Uint8Array.from(b, (c) => c.charCodeAt(0));
}
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const c of children) e.append(c);
  return e;
}
function status(text, bad) {
  const s = $("status");
  s.textContent = text;
  s.className = bad ? "fail" : "ok";
}
async function api(path, body) {
  const r = await fetch(path, {
    method: body ? "POST" : "GET",
    headers: Object.assign({ "X-Kinko-Token": token }, body ? { "Content-Type": "application/json" } : {}),
    body: body ? JSON.stringify(body) : undefined,
    cache: "no-store",
  });
  const data = await r.json().catch(() => ({ error: "unreadable answer" }));
  if (!r.ok) throw new Error(data.error || r.statusText);
  return data;
}

// Asks the passkey to sign `prepared.message` (its challenge) and sends it as a governance vote.
async function govern(prepared, what, session) {
  status("Waiting for your passkey (" + what + ")…");
  const cred = await navigator.credentials.get({
    publicKey: {
      challenge: fromB64url(prepared.challenge),
      rpId: session.passkey.rp_id,
      allowCredentials: [{ type: "public-key", id: fromB64url(session.passkey.credential_id) }],
      userVerification: "required",
      timeout: 120000,
    },
  });
  const r = cred.response;
  const answer = await api("/api/governance", {
    message: prepared.message,
    authenticator_data: b64url(r.authenticatorData),
    client_data_json: b64url(r.clientDataJSON),
    signature: b64url(r.signature),
  });
  status(what + ": " + answer.state);
  await load();
}

function renderSigning(session) {
  const f = session.freeze;
  $("freeze-state").textContent = f.error
    ? "The freeze state is not available: " + f.error
    : f.frozen
    ? "FROZEN by " + f.frozen_by + (f.reason ? " (" + f.reason + ")" : "") + " · unfreeze approvals: " + f.unfreeze_approvals
    : "Signing is running.";
  $("freeze-state").className = f.frozen ? "fail" : "ok";
  const can = session.passkey !== null;
  const wire = (id, prepared, what) => {
    const b = $(id);
    b.hidden = !prepared;
    b.disabled = !can;
    b.onclick = prepared ? () => govern(prepared, what, session).catch((e) => status(e.message, true)) : null;
  };
  wire("freeze-button", f.freeze, "freeze");
  wire("unfreeze-button", f.unfreeze, "unfreeze");
  wire("veto-unfreeze-button", f.veto_unfreeze, "veto unfreeze");
  $("proposal-review").onclick = () => review(session).catch((e) => status(e.message, true));
}

async function review(session) {
  const p = await api("/api/proposal", { id: $("proposal-id").value.trim() });
  $("proposal").hidden = false;
  $("proposal-summary").textContent = "Proposal " + p.id + " by " + p.proposed_by + " · " + p.state + " · " + p.approvals + " · new policy hash (computed here) " + p.policy_hash;
  $("proposal-diff").textContent = p.diff;
  $("proposal-approve").disabled = session.passkey === null;
  $("proposal-veto").disabled = session.passkey === null;
  $("proposal-approve").onclick = () => govern(p.approve, "approve policy " + p.policy_hash.slice(0, 12), session).catch((e) => status(e.message, true));
  $("proposal-veto").onclick = () => govern(p.veto, "veto policy " + p.policy_hash.slice(0, 12), session).catch((e) => status(e.message, true));
}

async function vote(req, verdict, session) {
  status("Waiting for your passkey (" + verdict + " " + req.id + ")…");
  const cred = await navigator.credentials.get({
    publicKey: {
      challenge: fromB64url(req[verdict].challenge),
      rpId: session.passkey.rp_id,
      allowCredentials: [{ type: "public-key", id: fromB64url(session.passkey.credential_id) }],
      userVerification: "required",
      timeout: 120000,
    },
  });
  const r = cred.response;
  const answer = await api("/api/" + verdict, {
    request_id: req.id,
    message: req[verdict].message,
    authenticator_data: b64url(r.authenticatorData),
    client_data_json: b64url(r.clientDataJSON),
    signature: b64url(r.signature),
  });
  status(verdict === "approve" ? "Approved " + req.id + ": the request is now " + answer.state : "Rejected " + req.id + ": " + answer.state);
  await load();
}

function render(session) {
  $("who").textContent = "Officer " + session.officer + " · policy " + session.policy_hash.slice(0, 16) + "… · daemon " + session.server;
  const list = $("requests");
  list.replaceChildren();
  if (session.requests.length === 0) list.append(el("p", { id: "empty" }, "No request is waiting for approval."));
  for (const req of session.requests) {
    const box = el("article", { class: "request", id: "req-" + req.id, "data-request": req.id });
    box.append(el("h2", {}, req.id + " — " + req.summary));
    const rows = el("table", {});
    for (const [k, v] of req.fields) rows.append(el("tr", {}, el("th", {}, k), el("td", {}, v)));
    box.append(rows);
    for (const w of req.warnings) box.append(el("div", { class: "warning" }, "⚠ " + w));
    box.append(el("pre", {}, req.text));
    const checks = el("table", { class: "checks" });
    for (const c of req.checks) {
      checks.append(el("tr", {}, el("td", { class: c.passed ? "ok" : "fail" }, c.passed ? "✓" : "✗"), el("td", {}, c.condition), el("td", {}, c.saw)));
    }
    box.append(el("details", {}, el("summary", {}, "Your policy's checks (rule " + req.rule + ")"), checks));
    box.append(el("p", { class: req.agree ? "ok digest" : "fail digest" },
      (req.agree ? "Digest agrees with the daemon: " : "DIGEST MISMATCH — the daemon shows " + req.daemon_digest + ", this console decoded ") + req.digest));
    const can = req.agree && session.passkey !== null;
    const approve = el("button", { type: "button", class: "approve" }, "Approve with passkey");
    const reject = el("button", { type: "button", class: "reject" }, "Reject");
    approve.disabled = !can;
    reject.disabled = session.passkey === null;
    approve.addEventListener("click", () => vote(req, "approve", session).catch((e) => status(e.message, true)));
    reject.addEventListener("click", () => vote(req, "reject", session).catch((e) => status(e.message, true)));
    box.append(approve, reject);
    list.append(box);
  }
}

async function enrol(session) {
  const cred = await navigator.credentials.create({
    publicKey: {
      rp: { id: session.rp_id, name: "Kinko" },
      user: { id: new TextEncoder().encode(session.officer), name: session.officer, displayName: session.officer },
      challenge: crypto.getRandomValues(new Uint8Array(32)),
      pubKeyCredParams: [{ type: "public-key", alg: -7 }],
      authenticatorSelection: { userVerification: "required", residentKey: "preferred" },
      timeout: 120000,
    },
  });
  const spki = cred.response.getPublicKey();
  const answer = await api("/api/enrolled", { credential_id: b64url(cred.rawId), spki: b64url(spki) });
  $("enrol-result").textContent = answer.policy_line;
  status("Passkey created. Put the line shown in a policy proposal (kinko policy propose); it counts once installed.");
}

async function load() {
  try {
    const session = await api("/api/pending");
    $("enrol").hidden = false;
    $("enrol-officer").textContent = session.officer;
    $("enrol-button").onclick = () => enrol(session).catch((e) => status(e.message, true));
    render(session);
    renderSigning(session);
  } catch (e) {
    status(e.message, true);
  }
}
document.addEventListener("DOMContentLoaded", load);
