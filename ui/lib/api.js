// The admin API client and the browser session: the token lives in sessionStorage and goes out
// as a bearer token; JSON errors become `ApiError`s with the API's code and message; a 401
// ends the session and tells the app why (it shows the sign-in again).

const TOKEN_KEY = 'telemetryd.token';
const USER_KEY = 'telemetryd.user';

export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

const listeners = new Set();

export const session = {
  get token() { return sessionStorage.getItem(TOKEN_KEY); },
  /** `{name, role, allProducts}` of the signed-in token, or null. */
  get user() {
    try { return JSON.parse(sessionStorage.getItem(USER_KEY)); } catch { return null; }
  },
  get canWrite() { return this.user?.role === 'admin'; },
  start(token, user) {
    sessionStorage.setItem(TOKEN_KEY, token);
    sessionStorage.setItem(USER_KEY, JSON.stringify(user));
    notify(null);
  },
  /** Forgets the token; `reason` is shown on the sign-in page. */
  end(reason) {
    sessionStorage.removeItem(TOKEN_KEY);
    sessionStorage.removeItem(USER_KEY);
    notify(reason || null);
  },
  onChange(fn) { listeners.add(fn); },
};

function notify(reason) {
  for (const fn of listeners) fn(reason);
}

/** A query string from an object; empty values are left out. */
export function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params || {})) {
    if (value === undefined || value === null || value === '') continue;
    search.set(key, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : '';
}

async function send(path, { method = 'GET', body, signal, token = session.token, accept = 'application/json' } = {}) {
  const headers = { accept };
  if (token) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  let response;
  try {
    response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, 'network_error', `The server could not be reached (${e.message}).`);
  }
  if (response.ok) return response;
  let error = {};
  try { error = (await response.json()).error || {}; } catch { /* not JSON */ }
  const failure = new ApiError(response.status, error.code || `http_${response.status}`,
    error.message || `${response.status} ${response.statusText}`, error.details);
  if (response.status === 401 && token && token === session.token) {
    session.end(failure.code === 'invalid_token'
      ? 'Your token is no longer accepted (it was changed, removed or has expired). Sign in again.'
      : failure.message);
  }
  throw failure;
}

/** JSON from an API call. */
export async function api(path, options) {
  const response = await send(path, options);
  return response.status === 204 ? null : response.json();
}

/** The raw response (for NDJSON and headers). */
export function apiRaw(path, options) {
  return send(path, { accept: '*/*', ...options });
}

/** Fetches with the token and saves the body as a file. */
export async function download(path, filename) {
  const response = await apiRaw(path);
  const blob = await response.blob();
  const url = URL.createObjectURL(blob);
  const link = Object.assign(document.createElement('a'), { href: url, download: filename });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
  return blob.size;
}
