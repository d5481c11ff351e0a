// Renders the page the path names: /, /session/{key}, /servers.
import { renderSessions } from "./sessions.js";
import { renderTimeline } from "./timeline.js";
import { renderServers } from "./servers.js";
import { h } from "./util.js";

const app = document.getElementById("app");
const path = location.pathname;
let page = "sessions";
const run = (p) =>
  p.catch((e) => {
    app.replaceChildren(h("div", { class: "error-box" }, `Could not load: ${e.message}`));
  });
if (path.startsWith("/session/")) {
  page = "sessions";
  run(renderTimeline(app, decodeURIComponent(path.slice("/session/".length))));
} else if (path === "/servers") {
  page = "servers";
  run(renderServers(app));
} else {
  run(renderSessions(app));
}
for (const a of document.querySelectorAll("[data-nav]")) {
  a.classList.toggle("active", a.dataset.nav === page);
}
