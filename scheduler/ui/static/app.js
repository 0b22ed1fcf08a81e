// The dashboard's shell: token, hash routes (#/ and #/jobs/ID), auto-refresh.

import { Unauthorized, forgetToken, saveToken, takeTokenFromUrl, token } from "./api.js";
import { jobPage } from "./job.js";
import { overview } from "./overview.js";

const REFRESH_MS = 3000;
let timer = null;
let rendering = false;
let again = false; // a render asked while one runs (a new route): run once more after it

function route() {
  const match = location.hash.match(/^#\/jobs\/(\d+)/);
  return match ? () => jobPage(Number(match[1])) : overview;
}

async function render() {
  if (rendering) {
    again = true;
    return;
  }
  rendering = true;
  again = false;
  const view = document.getElementById("view");
  const status = document.getElementById("status");
  try {
    const parts = await route()();
    const keepScroll = window.scrollY;
    view.replaceChildren(...parts);
    window.scrollTo(0, keepScroll);
    status.textContent = `updated ${new Date().toLocaleTimeString()}`;
    status.className = "status ok";
    document.body.dataset.ready = "true";
  } catch (err) {
    if (err instanceof Unauthorized) {
      forgetToken();
      showLogin("That token was refused; enter another one.");
    } else {
      status.textContent = `error: ${err.message}`;
      status.className = "status error";
    }
  } finally {
    rendering = false;
    if (again) render();
  }
}

function showLogin(message = "") {
  clearInterval(timer);
  document.getElementById("login").hidden = false;
  document.getElementById("forget").hidden = true;
  document.getElementById("view").replaceChildren();
  document.getElementById("status").textContent = message;
}

function start() {
  document.getElementById("login").hidden = true;
  document.getElementById("forget").hidden = false;
  clearInterval(timer);
  render();
  timer = setInterval(render, REFRESH_MS);
}

function main() {
  takeTokenFromUrl();
  document.getElementById("login").addEventListener("submit", (event) => {
    event.preventDefault();
    saveToken(document.getElementById("token").value);
    start();
  });
  document.getElementById("forget").addEventListener("click", () => {
    forgetToken();
    showLogin();
  });
  window.addEventListener("hashchange", () => {
    takeTokenFromUrl();
    if (token()) start();
  });
  if (token()) start();
  else showLogin();
}

main();
