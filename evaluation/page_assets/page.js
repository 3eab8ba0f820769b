// Sorting and on-demand audio players for the listening report (no network, no libraries).
(function () {
  "use strict";
  const table = document.getElementById("files");
  if (!table) return;
  const body = table.tBodies[0];
  const limit = Number(table.dataset.players);
  const higherIsBetter = JSON.parse(table.dataset.higher);
  const state = { key: table.dataset.sortKey, worstFirst: true };

  function numberOf(row, key) {
    const text = row.getAttribute("data-v-" + key);
    return text === null || text === "" ? null : Number(text);
  }

  function compare(key, worstFirst) {
    if (key === "file") {
      return (a, b) => (worstFirst ? 1 : -1) * a.dataset.file.localeCompare(b.dataset.file);
    }
    const ascending = (higherIsBetter[key] === false) ? !worstFirst : worstFirst;
    return (a, b) => {
      const x = numberOf(a, key), y = numberOf(b, key);
      if (x === null || y === null) return (x === null) - (y === null);  // unscored files last
      return ascending ? x - y : y - x;
    };
  }

  function sortBy(key, worstFirst) {
    state.key = key; state.worstFirst = worstFirst;
    const rows = Array.from(body.rows).sort(compare(key, worstFirst));
    const fragment = document.createDocumentFragment();
    rows.forEach((row, index) => { row.querySelector("td.rank").textContent = String(index + 1); fragment.appendChild(row); });
    body.appendChild(fragment);
    const status = document.getElementById("sort-status");
    for (const th of table.tHead.rows[0].cells) {
      if (th.dataset.key === key && status) {
        const name = th.textContent.replace(/[\u2191\u2193]/g, "").trim();
        status.textContent = key === "file" ? `Files by name, ${worstFirst ? "A to Z" : "Z to A"}` : `Files by ${name}, ${worstFirst ? "worst" : "best"} first`;
      }
      if (th.dataset.key === key) {
        const ascending = key === "file" ? worstFirst : ((higherIsBetter[key] === false) ? !worstFirst : worstFirst);
        th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
      } else {
        th.removeAttribute("aria-sort");
      }
    }
    showPlayers();
  }

  function loadPlayers(row, how) {
    for (const slot of row.querySelectorAll(".player")) {
      if (slot.querySelector("audio")) continue;
      const audio = document.createElement("audio");
      audio.controls = true;
      audio.preload = "metadata";
      audio.src = slot.dataset.src;
      audio.title = slot.dataset.label;
      slot.querySelector(".placeholder").hidden = true;
      slot.prepend(audio);
    }
    if (how === "manual" || !row.dataset.players) row.dataset.players = how;
  }

  function unloadPlayers(row) {
    const audios = Array.from(row.querySelectorAll(".player audio"));
    if (audios.some((a) => !a.paused)) return;
    for (const audio of audios) {
      audio.removeAttribute("src");
      audio.load();
      audio.parentElement.querySelector(".placeholder").hidden = false;
      audio.remove();
    }
    delete row.dataset.players;
  }

  // Players for the first `limit` files in the current order; the others load on request.
  function showPlayers() {
    Array.from(body.rows).forEach((row, index) => {
      if (index < limit) loadPlayers(row, "auto");
      else if (row.dataset.players === "auto") unloadPlayers(row);
    });
  }

  table.tHead.addEventListener("click", (event) => {
    const th = event.target.closest("th[data-key]");
    if (!th) return;
    const key = th.dataset.key;
    sortBy(key, key === state.key ? !state.worstFirst : true);
  });
  body.addEventListener("click", (event) => {
    const button = event.target.closest("button.load");
    if (button) loadPlayers(button.closest("tr"), "manual");
  });
  // One sound at a time: starting a player pauses the others.
  document.addEventListener("play", (event) => {
    for (const audio of document.querySelectorAll("audio")) if (audio !== event.target) audio.pause();
  }, true);

  sortBy(state.key, true);
})();
