// The inbox's HTTP client and session. The refresh token lives in
// localStorage (so a reload stays signed in); the access token (15 min) only
// in memory, renewed a minute before it expires and again on a 401. Refresh
// tokens rotate on every use and a reused one revokes the whole family, so
// tabs refresh one at a time under a Web Lock and each re-reads the newest
// token first: two tabs never spend the same one.

const KEY = "bidi.session";
const LOCK = "bidi.refresh";

export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

function stored() {
  try {
    return JSON.parse(localStorage.getItem(KEY) || "null");
  } catch {
    return null;
  }
}

export class Session {
  constructor() {
    this.access = null;
    this.expiresAt = 0;
    this.user = null;
    this.organization = null;
    this.memberships = [];
    this.onSignedOut = () => {};
    this.onTokens = () => {};
    this.refreshing = null;
    this.timer = null;
  }

  get signedIn() {
    return Boolean(stored()?.refresh_token);
  }

  /** Keep what a sign-in, refresh or org switch answered. */
  adopt(body) {
    this.access = body.access_token;
    this.expiresAt = Date.now() + (body.expires_in || 900) * 1000;
    if (body.user) this.user = body.user;
    if (body.organization) this.organization = body.organization;
    localStorage.setItem(KEY, JSON.stringify({
      refresh_token: body.refresh_token, user: this.user, organization: this.organization }));
    clearTimeout(this.timer);
    const early = Math.max(5_000, this.expiresAt - Date.now() - 60_000);
    this.timer = setTimeout(() => this.refresh().catch(() => {}), early);
    this.onTokens(this.access);
  }

  async refresh() {
    if (!this.refreshing) {
      const run = async () => {
        const before = stored();
        if (!before?.refresh_token) throw new ApiError(401, "unauthorized", "signed out");
        const resp = await fetch("/v1/auth/refresh", {
          method: "POST", headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ refresh_token: before.refresh_token }),
        });
        if (!resp.ok) {
          if (resp.status === 401 || resp.status === 403) this.forget();
          throw await asError(resp);
        }
        this.adopt(await resp.json());
      };
      const locked = navigator.locks ? () => navigator.locks.request(LOCK, run) : run;
      this.refreshing = locked().finally(() => { this.refreshing = null; });
    }
    return this.refreshing;
  }

  forget() {
    clearTimeout(this.timer);
    localStorage.removeItem(KEY);
    this.access = null;
    this.user = null;
    this.organization = null;
    this.onSignedOut();
  }

  async signOut() {
    const refresh = stored()?.refresh_token;
    try {
      if (this.access) await this.request("POST", "/v1/auth/logout", { refresh_token: refresh });
    } catch {
      // signed out locally either way
    }
    // Unsent replies are kept across an expired session, not past a sign-out
    // (the next person at this browser must not read them).
    for (const key of Object.keys(localStorage)) {
      if (key.startsWith("bidi.composer.")) localStorage.removeItem(key);
    }
    this.forget();
  }

  /** A JSON request with the access token; one refresh and retry on 401. */
  async request(method, path, body, { headers = {}, raw = false } = {}) {
    if (!this.access || Date.now() > this.expiresAt - 5_000) await this.refresh();
    for (let attempt = 0; ; attempt++) {
      const init = { method, headers: { ...headers, Authorization: `Bearer ${this.access}` } };
      if (body instanceof FormData) {
        init.body = body;
      } else if (body !== undefined) {
        init.headers["Content-Type"] = "application/json";
        init.body = JSON.stringify(body);
      }
      let resp;
      try {
        resp = await fetch(path, init);
      } catch {
        throw new ApiError(0, "network", "cannot reach the server; check your connection");
      }
      if (resp.status === 401 && attempt === 0) {
        await this.refresh();
        continue;
      }
      if (!resp.ok) throw await asError(resp);
      if (raw) return resp;
      return resp.status === 204 ? null : resp.json();
    }
  }

  get(path) { return this.request("GET", path); }
  post(path, body, options) { return this.request("POST", path, body ?? {}, options); }
  patch(path, body) { return this.request("PATCH", path, body); }
  put(path, body) { return this.request("PUT", path, body); }
  del(path) { return this.request("DELETE", path); }
}

/** Sign-in and other calls made without a session. */
export async function publicPost(path, body) {
  let resp;
  try {
    resp = await fetch(path, { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body) });
  } catch {
    throw new ApiError(0, "network", "cannot reach the server; check your connection");
  }
  if (!resp.ok) throw await asError(resp);
  return resp.json();
}

async function asError(resp) {
  let error = {};
  try {
    error = (await resp.json()).error || {};
  } catch {
    // not our envelope (a proxy's page): say what we know
  }
  const retry = resp.headers.get("Retry-After");
  const message = error.message || (resp.status === 429 && retry
    ? `too many requests; try again in ${retry} s` : `the server answered ${resp.status}`);
  return new ApiError(resp.status, error.code || "http_" + resp.status, message, error.details);
}

/** `?a=1&b=2` from an object, skipping empty values. */
export function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") search.set(key, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}
