// The emergency summary page (docs/emergency-summary.md). The link is /s/<id>#<key>: the
// key never leaves this page (browsers do not send the fragment). The script fetches the
// encrypted summary (a JWE, `dir` + `A256GCM`), decrypts it with WebCrypto, and shows each
// section of the International Patient Summary as text (textContent only, never HTML).
// Nothing is stored and nothing is sent anywhere else.

const $ = (id) => document.getElementById(id);

function say(text, kind) {
  const s = $("status");
  s.textContent = text;
  s.className = "status" + (kind ? " " + kind : "");
  s.dataset.state = kind || "ok";
}

function b64url(s) {
  if (!/^[A-Za-z0-9_-]*$/.test(s)) throw new Error("not base64url");
  let t = s.replace(/-/g, "+").replace(/_/g, "/");
  while (t.length % 4) t += "=";
  const bin = atob(t);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

async function decrypt(jwe, keyText) {
  const parts = jwe.trim().split(".");
  if (parts.length !== 5 || parts[1] !== "") throw new Error("not a JWE");
  const header = JSON.parse(new TextDecoder().decode(b64url(parts[0])));
  if (header.alg !== "dir" || header.enc !== "A256GCM" || header.zip) {
    throw new Error("unsupported encryption");
  }
  const key = await crypto.subtle.importKey("raw", b64url(keyText), "AES-GCM", false, [
    "decrypt",
  ]);
  const ct = b64url(parts[3]);
  const tag = b64url(parts[4]);
  const data = new Uint8Array(ct.length + tag.length);
  data.set(ct);
  data.set(tag, ct.length);
  const plain = await crypto.subtle.decrypt(
    {
      name: "AES-GCM",
      iv: b64url(parts[2]),
      additionalData: new TextEncoder().encode(parts[0]),
      tagLength: 128,
    },
    key,
    data,
  );
  return new TextDecoder().decode(plain);
}

// The lines of a section's narrative (an XHTML div made by the sharing node), read as
// text: parsing never runs anything, and only text is copied onto the page.
function narrativeLines(div) {
  if (typeof div !== "string") return [];
  const doc = new DOMParser().parseFromString(div, "text/html");
  const items = [...doc.querySelectorAll("li")].map((li) => li.textContent.trim());
  if (items.length) return items.filter((t) => t);
  const t = doc.body.textContent.trim();
  return t ? [t] : [];
}

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;
  if (cls) e.className = cls;
  return e;
}

function render(bundle, text) {
  const entries = Array.isArray(bundle.entry) ? bundle.entry : [];
  const comp = entries[0] && entries[0].resource;
  if (bundle.resourceType !== "Bundle" || !comp || comp.resourceType !== "Composition") {
    throw new Error("not an International Patient Summary");
  }
  $("title").textContent = String(comp.title || "Emergency summary");
  document.title = String(comp.title || "Emergency summary");
  const made = $("made");
  made.textContent = "Made " + new Date(comp.date).toLocaleString() + " from the patient's own record.";
  made.hidden = false;
  const out = $("summary");
  out.replaceChildren();
  for (const s of Array.isArray(comp.section) ? comp.section : []) {
    const code = s.code && s.code.coding && s.code.coding[0] && s.code.coding[0].code;
    const sec = el("section", undefined, code === "104605-1" ? "alerts" : "");
    sec.dataset.code = String(code || "");
    sec.append(el("h2", String(s.title || "Section")));
    const lines = s.emptyReason ? [] : narrativeLines(s.text && s.text.div);
    if (lines.length) {
      const ul = el("ul");
      for (const l of lines) ul.append(el("li", l));
      sec.append(ul);
    } else {
      sec.append(el("p", "None recorded.", "none"));
    }
    out.append(sec);
  }
  const a = $("download");
  // A data: URL (a download, not a fetch: the page's policy allows fetching only from here).
  a.href = "data:application/fhir+json;charset=utf-8," + encodeURIComponent(text);
  $("actions").hidden = false;
}

async function main() {
  const m = location.pathname.match(/^\/s\/([A-Za-z0-9_-]{22})$/);
  const keyText = location.hash.slice(1);
  if (!m || !/^[A-Za-z0-9_-]{43}$/.test(keyText)) {
    say("This link is incomplete: ask for the whole link (it ends with # and a key).", "error");
    return;
  }
  if (!window.crypto || !crypto.subtle) {
    say("This page needs a secure (https) connection to decrypt the summary.", "error");
    return;
  }
  let resp;
  try {
    resp = await fetch(`/s/${m[1]}/blob`, { cache: "no-store", referrerPolicy: "no-referrer" });
  } catch (e) {
    say("The summary could not be fetched: " + e.message, "error");
    return;
  }
  if (resp.status === 410) {
    say("This emergency summary is no longer available: it has ended or expired.", "ended");
    return;
  }
  if (resp.status === 404) {
    say("There is no emergency summary at this link.", "error");
    return;
  }
  if (resp.status === 429) {
    say("Too many openings: try again in a minute.", "error");
    return;
  }
  if (!resp.ok) {
    say("The summary could not be fetched (HTTP " + resp.status + ").", "error");
    return;
  }
  let text;
  try {
    text = await decrypt(await resp.text(), keyText);
  } catch (_) {
    say("This summary cannot be decrypted: the link is incomplete or was altered.", "error");
    return;
  }
  try {
    render(JSON.parse(text), text);
  } catch (e) {
    say("The summary could not be shown: " + e.message, "error");
    return;
  }
  say("Shown below. This opening is recorded in the patient's audit trail.");
}

main();
