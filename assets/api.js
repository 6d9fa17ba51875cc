// The one way pages talk to the server: JSON over fetch with the session's CSRF token;
// an error answer becomes an Error carrying the server's message.

let csrfToken = null;

/** An error the server answered with (its code and message) or a network failure. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** Calls `path` with `method` and an optional JSON body; the parsed answer or null. */
export async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (csrfToken) headers["X-Datapool-CSRF"] = csrfToken;
  const init = { method, headers, credentials: "same-origin", cache: "no-store" };
  if (body !== undefined) {
    if (body instanceof Blob) {
      init.body = body;
      headers["Content-Type"] = body.type || "application/octet-stream";
    } else {
      init.body = JSON.stringify(body);
      headers["Content-Type"] = "application/json";
    }
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch {
    throw new ApiError(0, "NETWORK", "The server could not be reached. Check the connection and try again.");
  }
  const text = await response.text();
  let answer = null;
  try {
    answer = text ? JSON.parse(text) : null;
  } catch {
    answer = null;
  }
  if (!response.ok) {
    const error = answer && answer.error;
    const message = error && error.message ? error.message : `The server answered ${response.status}.`;
    if (response.status === 401 && csrfToken) {
      csrfToken = null;
      window.dispatchEvent(new Event("signed-out"));
    }
    throw new ApiError(response.status, error ? error.code : "HTTP", message);
  }
  return answer;
}

/** Signs in with the admin token; the session cookie is set by the answer. */
export async function signIn(token) {
  const session = await api("POST", "/api/ui/session", { token });
  csrfToken = session.csrfToken;
}

/** Finds the current session after a page load; false when not signed in. */
export async function resumeSession() {
  try {
    const session = await api("GET", "/api/ui/session");
    csrfToken = session.signedIn ? session.csrfToken : null;
    return session.signedIn;
  } catch {
    return false;
  }
}

/** Ends the session. */
export async function signOut() {
  try {
    await api("DELETE", "/api/ui/session");
  } finally {
    csrfToken = null;
  }
}

/**
 * Pages through a newest-first log answering `{"entries","nextCursor"}`: `load(true)`
 * starts over, `load(false)` appends the next older page; `more()` says if there is one.
 */
export function logPages(path, limit) {
  const pages = {
    entries: [],
    cursor: null,
    more: () => Boolean(pages.cursor),
    async load(reset) {
      const after = !reset && pages.cursor ? `&cursor=${encodeURIComponent(pages.cursor)}` : "";
      const answer = await api("GET", `${path}?limit=${limit}${after}`);
      pages.entries = reset ? answer.entries : pages.entries.concat(answer.entries);
      pages.cursor = answer.nextCursor;
    },
  };
  return pages;
}

/** A path segment, escaped. */
export const seg = encodeURIComponent;
