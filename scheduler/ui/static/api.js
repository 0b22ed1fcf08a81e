// The JSON API with the bearer token; the token is asked once and kept in localStorage
// (a "#token=..." in the URL is taken too, for scripts and bookmarks).

const KEY = "corral.token";

export class Unauthorized extends Error {}

export function takeTokenFromUrl() {
  const match = location.hash.match(/(?:^#|&)token=([^&]+)/);
  if (!match) return;
  localStorage.setItem(KEY, decodeURIComponent(match[1]));
  history.replaceState(null, "", location.pathname + "#/");
}

export function token() {
  return localStorage.getItem(KEY);
}

export function saveToken(value) {
  localStorage.setItem(KEY, value.trim());
}

export function forgetToken() {
  localStorage.removeItem(KEY);
}

export async function get(path) {
  const response = await fetch(`/api/v1${path}`, {
    headers: { Authorization: `Bearer ${token()}`, Accept: "application/json" },
  });
  if (response.status === 401) throw new Unauthorized("the token was refused");
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const message = body.error?.message ?? `HTTP ${response.status}`;
    throw new Error(message);
  }
  return body;
}
