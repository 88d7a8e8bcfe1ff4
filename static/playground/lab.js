// The lab page: one xterm.js terminal per instance tab, each on its own WebSocket.
// window.term is the active tab's Terminal (tests read its buffer); window.playground holds
// the tabs. Protocol: see playground/labs/consumers.py. While an instance starts, or its
// image is pulled, the socket is open and the server says so ("waiting", then per-layer
// "pull" progress), then "ready" and the shell's bytes; or "failed" and why.
(function () {
  "use strict";

  const config = JSON.parse(document.getElementById("lab-config").textContent);
  const encoder = new TextEncoder();
  const ACK_EVERY = 128 * 1024;
  const CLOSE_EXITED = 4001;
  const CLOSE_ENDED = 4410;
  const CLOSE_REMOVED = 4411;
  const CLOSE_FAILED = 4412;
  const PHASES = {
    waiting: "Waiting",
    downloading: "Downloading",
    verifying: "Verifying",
    extracting: "Extracting",
    done: "Pull complete",
    exists: "Already here",
  };

  function formatSize(n) {
    if (n >= 1 << 20) return (n / (1 << 20)).toFixed(1) + " MiB";
    if (n >= 1 << 10) return (n / (1 << 10)).toFixed(0) + " KiB";
    return n + " B";
  }

  function csrfToken() {
    const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    if (match) return decodeURIComponent(match[1]);
    const input = document.querySelector("input[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  }

  function copyText(text) {
    if (!text) return;
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).catch(function () { copyFallback(text); });
    } else {
      copyFallback(text);
    }
  }

  function copyFallback(text) {
    const area = document.createElement("textarea");
    area.value = text;
    area.style.position = "fixed";
    area.style.opacity = "0";
    document.body.appendChild(area);
    area.select();
    try { document.execCommand("copy"); } catch (e) { /* nothing more to try */ }
    document.body.removeChild(area);
  }

  function readClipboard() {
    if (navigator.clipboard && navigator.clipboard.readText && window.isSecureContext) {
      return navigator.clipboard.readText();
    }
    return Promise.reject(new Error("no clipboard access"));
  }

  class TerminalTab {
    constructor(instance) {
      this.instance = instance;
      this.button = document.querySelector('.tab[data-instance="' + instance.id + '"]');
      this.panel = document.querySelector('.panel[data-instance="' + instance.id + '"]');
      this.element = this.panel.querySelector(".terminal");
      this.stateLabel = this.panel.querySelector(".conn-state");
      this.dot = this.button.querySelector(".conn");
      this.pullBox = this.panel.querySelector(".pull");
      this.failure = this.panel.querySelector(".failure");
      this.term = null;
      this.ws = null;
      this.attempts = 0;
      this.retryTimer = null;
      this.stopped = false;
      this.unacked = 0;
      this.ackTimer = null;
      this.state = "idle";
    }

    setState(state, text) {
      this.state = state;
      this.stateLabel.dataset.state = state;
      this.stateLabel.textContent = text;
      this.dot.dataset.state = state;
      this.panel.dataset.connection = state;
    }

    open() {
      if (this.term) return;
      const term = new Terminal({
        cursorBlink: true,
        scrollback: 10000,
        fontSize: 14,
        fontFamily: "ui-monospace, 'DejaVu Sans Mono', Menlo, Consolas, monospace",
        allowProposedApi: true,
        theme: { background: "#111418" },
      });
      this.fit = new FitAddon.FitAddon();
      this.search = new SearchAddon.SearchAddon();
      term.loadAddon(this.fit);
      term.loadAddon(this.search);
      term.loadAddon(new WebLinksAddon.WebLinksAddon());
      term.open(this.element);
      this.term = term;
      this.bindInput();
      this.bindClipboard();
      this.bindSearch();
      this.fitNow();
      if (this.instance.status === "failed") {
        this.stopped = true;
        this.setState("failed", "Could not start");
        return;
      }
      this.connect();
    }

    bindInput() {
      this.term.onData((data) => this.sendBytes(encoder.encode(data)));
      this.term.onBinary((data) => {
        const bytes = new Uint8Array(data.length);
        for (let i = 0; i < data.length; i++) bytes[i] = data.charCodeAt(i) & 0xff;
        this.sendBytes(bytes);
      });
      this.term.onResize(() => this.sendResize());
    }

    bindClipboard() {
      const term = this.term;
      // Select to copy, like most terminals on Linux.
      term.onSelectionChange(() => copyText(term.getSelection()));
      term.attachCustomKeyEventHandler((event) => {
        if (event.type !== "keydown" || !event.ctrlKey || !event.shiftKey) return true;
        if (event.code === "KeyC") {
          copyText(term.getSelection());
          event.preventDefault();
          return false;
        }
        if (event.code === "KeyV") {
          // term.paste wraps the text in bracketed-paste markers when the shell asked.
          readClipboard().then((text) => term.paste(text)).catch(() => {});
          event.preventDefault();
          return false;
        }
        return true;
      });
      this.element.addEventListener("contextmenu", (event) => {
        event.preventDefault();
        readClipboard().then((text) => { term.paste(text); term.focus(); }).catch(() => {
          this.flash("The browser did not allow reading the clipboard: use Ctrl+Shift+V.");
        });
      });
    }

    bindSearch() {
      const box = this.panel.querySelector(".find");
      if (!box) return;
      box.addEventListener("keydown", (event) => {
        if (event.key === "Enter") {
          event.preventDefault();
          if (event.shiftKey) this.search.findPrevious(box.value);
          else this.search.findNext(box.value);
        } else if (event.key === "Escape") {
          this.search.clearDecorations();
          this.term.focus();
        }
      });
    }

    flash(text) {
      const previous = this.stateLabel.textContent;
      this.stateLabel.textContent = text;
      setTimeout(() => { if (this.stateLabel.textContent === text) this.stateLabel.textContent = previous; }, 4000);
    }

    fitNow() {
      if (!this.term || this.panel.hidden) return;
      try { this.fit.fit(); } catch (e) { /* not laid out yet */ }
    }

    sendBytes(bytes) {
      if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(bytes);
    }

    sendResize() {
      if (this.ws && this.ws.readyState === WebSocket.OPEN && this.term) {
        this.ws.send(JSON.stringify({ type: "resize", rows: this.term.rows, cols: this.term.cols }));
      }
    }

    // Output is acknowledged once xterm.js has written it: the server sends no more than a
    // window ahead, so a flood cannot outrun the page.
    acknowledge(count) {
      this.unacked += count;
      if (this.unacked >= ACK_EVERY) {
        this.flushAck();
      } else if (!this.ackTimer) {
        this.ackTimer = setTimeout(() => this.flushAck(), 20);
      }
    }

    flushAck() {
      clearTimeout(this.ackTimer);
      this.ackTimer = null;
      if (this.unacked > 0 && this.ws && this.ws.readyState === WebSocket.OPEN) {
        this.ws.send(JSON.stringify({ type: "ack", bytes: this.unacked }));
      }
      this.unacked = 0;
    }

    connect() {
      clearTimeout(this.retryTimer);
      this.stopped = false;
      this.setState("connecting", this.attempts ? "Reconnecting…" : "Connecting…");
      const scheme = location.protocol === "https:" ? "wss://" : "ws://";
      const ws = new WebSocket(scheme + location.host + this.instance.ws);
      ws.binaryType = "arraybuffer";
      this.ws = ws;
      ws.onopen = () => {
        this.attempts = 0;
        this.unacked = 0;
        // The server replays the scrollback first: start from a clean screen.
        this.term.reset();
        this.setState("connected", "Connected");
        this.sendResize();
      };
      ws.onmessage = (event) => {
        if (typeof event.data === "string") {
          this.control(event.data);
          return;
        }
        const data = new Uint8Array(event.data);
        if (this.state !== "connected") this.setState("connected", "Connected");
        this.term.write(data, () => this.acknowledge(data.length));
      };
      ws.onclose = (event) => this.closed(event);
    }

    control(text) {
      let message;
      try { message = JSON.parse(text); } catch (e) { return; }
      if (message.type === "exit") {
        this.term.write("\r\n\x1b[2m[the shell exited with code " + message.code + "]\x1b[0m\r\n");
      } else if (message.type === "waiting") {
        const pulling = message.status === "pulling";
        this.setState(pulling ? "pulling" : "starting", pulling ? "Downloading the image…" : "Starting…");
      } else if (message.type === "pull") {
        this.showPull(message);
      } else if (message.type === "ready") {
        this.pullBox.hidden = true;
        this.setState("connected", "Connected");
      } else if (message.type === "failed") {
        this.showFailure(String(message.message || ""));
      }
    }

    // Per-layer bars of the image being pulled; built with textContent only.
    showPull(progress) {
      this.pullBox.hidden = false;
      this.pullBox.querySelector(".pull-ref").textContent = String(progress.reference || "");
      const list = this.pullBox.querySelector(".layers");
      for (const layer of progress.layers || []) {
        const id = String(layer.id);
        let row = Array.from(list.children).find((li) => li.dataset.layer === id);
        if (!row) {
          row = document.createElement("li");
          row.className = "layer";
          row.dataset.layer = id;
          for (const part of ["layer-id", "bar", "phase", "bytes"]) {
            const cell = document.createElement(part === "bar" ? "progress" : "span");
            cell.className = part;
            row.appendChild(cell);
          }
          row.querySelector(".layer-id").textContent = id;
          list.appendChild(row);
        }
        const total = Number(layer.total) || 0;
        const current = Number(layer.current) || 0;
        const bar = row.querySelector(".bar");
        bar.max = total || 1;
        bar.value = layer.phase === "exists" || layer.phase === "done" ? bar.max : current;
        row.dataset.phase = String(layer.phase);
        row.querySelector(".phase").textContent = PHASES[layer.phase] || String(layer.phase);
        row.querySelector(".bytes").textContent = total ? formatSize(current) + " / " + formatSize(total) : "";
      }
      const note = this.pullBox.querySelector(".pull-note");
      note.textContent = String(progress.note || "");
      note.hidden = !progress.note;
    }

    showFailure(text) {
      text = text || "This instance could not be started.";
      this.pullBox.hidden = true;
      this.failure.textContent = text;
      this.failure.hidden = false;
      this.stopped = true;
      this.setState("failed", "Could not start");
      setTimeout(poll, 1000); // a lab whose first instance failed has ended: poll reloads
    }

    closed(event) {
      this.ws = null;
      if (this.stopped) return;
      if (event.code === CLOSE_ENDED || event.code === CLOSE_REMOVED) {
        location.reload();
        return;
      }
      if (event.code === CLOSE_FAILED) {
        this.showFailure(this.failure.textContent);
        return;
      }
      if (event.code === CLOSE_EXITED) {
        this.setState("exited", "Shell exited: press Restart");
        this.stopped = true;
        return;
      }
      this.setState("disconnected", "Disconnected");
      // Ask the page why: a lab that ended or is not ours stops the retries.
      fetch(config.statusUrl, { headers: { Accept: "application/json" }, credentials: "same-origin" })
        .then((response) => {
          if (response.status === 403 || response.status === 404) {
            this.stopped = true;
            this.setState("forbidden", response.status === 403 ? "Not yours" : "Gone");
            return null;
          }
          return response.ok ? response.json() : {};
        })
        .then((status) => {
          if (status === null) return;
          if (status && status.active === false) { location.reload(); return; }
          const mine = status && (status.instances || []).find((i) => i.id === this.instance.id);
          if (mine && mine.status === "failed") { this.showFailure(mine.error || ""); return; }
          this.retry();
        })
        .catch(() => this.retry());
    }

    retry() {
      this.attempts += 1;
      const delay = Math.min(10000, 500 * Math.pow(2, this.attempts - 1)) * (0.8 + Math.random() * 0.4);
      this.setState("reconnecting", "Reconnecting in " + Math.ceil(delay / 1000) + " s…");
      this.retryTimer = setTimeout(() => this.connect(), delay);
    }

    reconnectNow() {
      if (this.ws || !this.term) return;
      this.attempts = 0;
      this.connect();
    }
  }

  // -- tabs -------------------------------------------------------------------------------

  const tabs = config.instances.map((instance) => new TerminalTab(instance));
  const playground = { tabs: tabs, active: null };
  window.playground = playground;

  function activate(tab) {
    for (const other of tabs) {
      const on = other === tab;
      other.panel.hidden = !on;
      other.button.setAttribute("aria-selected", on ? "true" : "false");
      other.button.classList.toggle("active", on);
    }
    playground.active = tab;
    tab.open();
    window.term = tab.term;
    requestAnimationFrame(() => { tab.fitNow(); tab.term.focus(); });
    if (location.hash !== "#" + tab.instance.name) history.replaceState(null, "", "#" + tab.instance.name);
  }

  for (const tab of tabs) tab.button.addEventListener("click", () => activate(tab));
  if (tabs.length) {
    const wanted = tabs.find((t) => "#" + t.instance.name === location.hash);
    activate(wanted || tabs[0]);
  }

  let resizeFrame = null;
  window.addEventListener("resize", () => {
    cancelAnimationFrame(resizeFrame);
    resizeFrame = requestAnimationFrame(() => playground.active && playground.active.fitNow());
  });
  window.addEventListener("online", () => tabs.forEach((t) => t.reconnectNow()));
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden) tabs.forEach((t) => t.reconnectNow());
  });

  // -- lifetime and status ----------------------------------------------------------------

  const remainingEl = document.getElementById("remaining");
  const warningEl = document.getElementById("warning");
  const warningRemainingEl = document.getElementById("warning-remaining");
  let endsAt = null;

  function formatSeconds(total) {
    total = Math.max(0, Math.floor(total));
    const h = Math.floor(total / 3600), m = Math.floor((total % 3600) / 60), s = total % 60;
    const pad = (n) => String(n).padStart(2, "0");
    return (h ? h + ":" + pad(m) : String(m)) + ":" + pad(s);
  }

  function tick() {
    if (endsAt === null) return;
    const left = (endsAt - Date.now()) / 1000;
    remainingEl.textContent = formatSeconds(left);
    const warn = left <= config.warnSeconds;
    warningEl.hidden = !warn;
    if (warn) warningRemainingEl.textContent = formatSeconds(left);
  }

  function formatBytes(n) {
    if (n === null || n === undefined) return "–";
    if (n >= 1 << 30) return (n / (1 << 30)).toFixed(1) + " GiB";
    return (n / (1 << 20)).toFixed(1) + " MiB";
  }

  function showStatus(status) {
    if (status.active === false) { location.reload(); return; }
    endsAt = Date.now() + status.remaining_seconds * 1000;
    document.getElementById("extend").disabled = !status.can_extend;
    for (const item of status.instances) {
      const panel = document.querySelector('.panel[data-instance="' + item.id + '"]');
      if (!panel) continue;
      panel.querySelector('[data-field="status"]').textContent = item.status;
      panel.querySelector('[data-field="cpu"]').textContent =
        item.cpu_percent === null ? "–" : item.cpu_percent + " %";
      panel.querySelector('[data-field="memory"]').textContent = formatBytes(item.memory);
      panel.querySelector('[data-field="attached"]').textContent = item.attached;
      if (item.error) {
        const failure = panel.querySelector('[data-field="error"]');
        failure.textContent = item.error;
        failure.hidden = false;
      }
    }
    tick();
  }

  function poll() {
    fetch(config.statusUrl, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then((response) => (response.ok ? response.json() : null))
      .then((status) => status && showStatus(status))
      .catch(() => {});
  }

  document.getElementById("extend-form").addEventListener("submit", (event) => {
    event.preventDefault();
    fetch(event.target.action, {
      method: "POST",
      headers: { Accept: "application/json", "X-CSRFToken": csrfToken() },
      credentials: "same-origin",
    })
      .then((response) => response.json())
      .then((body) => {
        if (body.error) alert(body.error);
        else showStatus(body);
      })
      .catch(() => {});
  });

  poll();
  setInterval(poll, 5000);
  setInterval(tick, 1000);
})();
