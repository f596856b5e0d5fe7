"""Fixtures for report tests: small real results of each kind, and a headless Chromium driven
over the Chrome DevTools Protocol (on a pipe, so no WebSocket library is needed)."""

from __future__ import annotations

import fcntl
import json
import os
import queue
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from loratwin import ServerConfig, reference_layout, simulate
from loratwin.errors import InfeasibleConfigError
from loratwin.validate.replay import ReplayResult
from loratwin.validate.runs import RealRun

PROFILE = "llama-3.1-8b-instruct"
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# Flags for a quiet, reproducible, offline headless browser (root in containers needs --no-sandbox).
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
    "--no-first-run", "--no-default-browser-check", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-extensions", "--hide-scrollbars",
    "--mute-audio", "--remote-debugging-pipe",
)


# ---------------------------------------------------------------- results of each kind

@pytest.fixture(scope="session")
def sim_result():
    """A run that starves: 24 adapters at up to 1.6 req/s on 4 GPU slots."""
    workload = reference_layout(24, rates=[1.6, 0.8, 0.4], ranks=[8, 16], seed=0)
    return simulate(workload, ServerConfig(max_loras=4), PROFILE, duration_s=180, seed=0)


@pytest.fixture(scope="session")
def sim_dir(sim_result, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("simulate-out")
    sim_result.write(out)
    return out


def _run(i: int, model: str, status: str, served: int, max_loras: int, rng: np.random.Generator) -> RealRun:
    tok = 180.0 * served * (0.9 if max_loras * 4 >= served else 0.5)
    measured = {
        "total_tok_s": tok, "mean_itl_ms": 15 + served / 8, "mean_ttft_ms": 40 + served ** 1.5,
        "throughput_over_offered": 0.97 if max_loras * 4 >= served else 0.55,
        "ttft_with_unfinished_ms": 60 + served ** 1.6, "sent_offered_tok_s": 200.0 * served,
        "paper_dt_total_tok_s": tok * rng.uniform(0.9, 1.2), "paper_dt_itl_ms": (15 + served / 8) * rng.uniform(0.8, 1.1),
        "paper_dt_ttft_ms": 60 + served ** 1.6,
    }
    if status != "ok":
        measured = {k: None for k in measured}
    return RealRun(
        run_id=f"real_results/{model}/rank_16/_{max_loras}_{served}_16_{i}", source_set="synthetic", model=model,
        status=status, max_loras=max_loras, served_adapters=served, max_lora_rank=16, rank_cycle=(8, 16),
        rate_values=(0.1, 0.05), rate_counts=(served // 2, served - served // 2), measured=measured,
        starved=None if status != "ok" else measured["throughput_over_offered"] < 0.9,
    )


@pytest.fixture(scope="session")
def validation_results() -> list[ReplayResult]:
    """Replays of made-up runs: two models, a start failure, one starvation disagreement."""
    rng = np.random.default_rng(0)
    results, i = [], 0
    for model in ("model-a", "model-b"):
        for max_loras in (4, 8, 16):
            for served in (8, 16, 32, 64, 128):
                i += 1
                run = _run(i, model, "ok", served, max_loras, rng)
                m = run.measured
                ratio = m["throughput_over_offered"] * rng.uniform(0.95, 1.05)
                results.append(ReplayResult(
                    run=run, started=True, seeds=1, total_tok_s=m["total_tok_s"] * rng.uniform(0.93, 1.08),
                    mean_itl_ms=m["mean_itl_ms"] * rng.uniform(0.85, 1.15),
                    mean_ttft_ms=m["mean_ttft_ms"] * rng.uniform(0.7, 1.4),
                    throughput_over_offered=ratio, starved=bool(1 - ratio >= 0.1),
                ))
        i += 1
        results.append(ReplayResult(run=_run(i, model, "oom_at_start", 256, 64, rng), started=False, seeds=1,
                                    failure="does not start"))
    return results


@pytest.fixture(scope="session")
def validation_dir(validation_results, tmp_path_factory) -> Path:
    from loratwin.validate import error_table
    from loratwin.validate.report import write_validation

    out = tmp_path_factory.mktemp("validate-out")
    write_validation(validation_results, error_table(validation_results), out)
    return out


@pytest.fixture(scope="session")
def sweep_table():
    """A real small sweep through the twin (two workloads), as the sweep command will save it."""
    import pyarrow as pa

    cols: dict[str, list] = {c: [] for c in ("workload_key", "max_loras", "served", "total_tok_s", "starved")}
    for key, rates in (("light", [0.4, 0.2, 0.1]), ("heavy", [1.6, 0.8, 0.4])):
        for max_loras in (1, 2, 4, 8, 16):
            for served in (4, 8, 16, 32, 64):
                if served < max_loras:
                    continue
                try:
                    r = simulate(reference_layout(served, rates, [8, 16], seed=0), ServerConfig(max_loras=max_loras),
                                 PROFILE, duration_s=60, seed=0)
                except InfeasibleConfigError:
                    continue
                for c, v in zip(cols, (key, max_loras, served, r.total_tok_s, r.starved), strict=True):
                    cols[c].append(v)
    return pa.table(cols)


@pytest.fixture(scope="session")
def plan_file(tmp_path_factory) -> Path:
    """A placement of 12 adapters, as `loratwin place --out` writes it."""
    import yaml

    from loratwin.plan.placement import place
    from loratwin.profiles import load_profile
    from loratwin.workload import reference_layout

    placement = place(reference_layout(12, [1.6, 0.8, 0.4], [8, 16], 0), load_profile("llama-3.1-8b-instruct"))
    path = tmp_path_factory.mktemp("plan") / "placement.yaml"
    path.write_text(yaml.safe_dump(placement.to_dict(), sort_keys=False))
    return path


@pytest.fixture(scope="session")
def sweep_dir(sweep_table, tmp_path_factory) -> Path:
    import pyarrow.parquet as pq

    out = tmp_path_factory.mktemp("sweep-out")
    pq.write_table(sweep_table, out / "sweep.parquet")
    return out


# ---------------------------------------------------------------- headless Chromium over CDP

@dataclass
class PageCheck:
    """What a page did when loaded: problems a person would see in DevTools, its images, a screenshot."""

    url: str
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    images: list[dict] = field(default_factory=list)
    title: str = ""
    screenshot: bytes = b""


class Chromium:
    """A headless Chromium speaking CDP on fds 3 (commands in) and 4 (replies and events out)."""

    def __init__(self, binary: str, profile_dir: Path):
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        # The child's ends go above fd 10, where bash (dash cannot name fds above 9) moves them to 3
        # and 4 without one overwriting the other; a preexec_fn would be unsafe with threads running.
        child_in, child_out = (fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in (to_browser_r, from_browser_w))
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._proc = subprocess.Popen(
            ["bash", "-c", f'exec "$@" 3<&{child_in} 4>&{child_out} {child_in}<&- {child_out}>&-', "bash",
             binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile_dir}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            pass_fds=(child_in, child_out),
        )
        os.close(child_in)
        os.close(child_out)
        self._next_id = 0
        self._replies: dict[int, dict] = {}
        self._events: queue.Queue = queue.Queue()
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        buf = b""
        while True:
            try:
                chunk = os.read(self._from_browser, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                with self._cond:
                    self._replies[-1] = {"closed": True}
                    self._cond.notify_all()
                return
            buf += chunk
            *messages, buf = buf.split(b"\0")
            for raw in messages:
                msg = json.loads(raw)
                if "id" in msg:
                    with self._cond:
                        self._replies[msg["id"]] = msg
                        self._cond.notify_all()
                else:
                    self._events.put(msg)

    def send(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 20) -> dict:
        self._next_id += 1
        msg_id = self._next_id
        msg = {"id": msg_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._to_browser, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        with self._cond:
            while msg_id not in self._replies:
                if -1 in self._replies:
                    raise RuntimeError(f"browser exited while waiting for {method}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no reply to {method} in {timeout} s")
                self._cond.wait(left)
            reply = self._replies.pop(msg_id)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def check(self, url: str, *, width: int = 1280, height: int = 900, full_page: bool = True,
              timeout: float = 20) -> PageCheck:
        """Open url in a fresh tab, wait for its load event, and collect what went wrong."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        try:
            for domain in ("Page", "Runtime", "Log", "Network"):
                self.send(f"{domain}.enable", session=session)
            self.send("Emulation.setDeviceMetricsOverride",
                      {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}, session=session)
            result = PageCheck(url=url)
            nav = self.send("Page.navigate", {"url": url}, session=session)
            if nav.get("errorText"):
                result.errors.append(f"navigation: {nav['errorText']}")
            self._wait_for_load(session, result, timeout)
            images = self._evaluate(session, """
                Promise.all(Array.from(document.images).map(img =>
                    img.decode().then(() => null, () => null).then(() => ({
                        src: img.currentSrc.slice(0, 40), alt: img.alt, complete: img.complete,
                        naturalWidth: img.naturalWidth, naturalHeight: img.naturalHeight,
                        shownWidth: img.getBoundingClientRect().width,
                        shownHeight: img.getBoundingClientRect().height}))))""")
            result.images = images
            result.title = self._evaluate(session, "document.title")
            self._drain(session, result, settle=0.2)
            params: dict = {"format": "png"}
            if full_page:
                size = self.send("Page.getLayoutMetrics", session=session)["cssContentSize"]
                params.update(captureBeyondViewport=True,
                              clip={"x": 0, "y": 0, "width": width, "height": size["height"], "scale": 1})
            import base64

            result.screenshot = base64.b64decode(self.send("Page.captureScreenshot", params, session=session)["data"])
            return result
        finally:
            self.send("Target.closeTarget", {"targetId": target})

    def _evaluate(self, session: str, expression: str):
        reply = self.send("Runtime.evaluate", {"expression": expression, "awaitPromise": True,
                                               "returnByValue": True}, session=session)
        if "exceptionDetails" in reply:
            raise RuntimeError(f"evaluating a check failed: {reply['exceptionDetails']}")
        return reply["result"].get("value")

    def _wait_for_load(self, session: str, result: PageCheck, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                event = self._events.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if self._record(event, session, result) == "Page.loadEventFired":
                return
        raise TimeoutError(f"{result.url} did not finish loading in {timeout} s")

    def _drain(self, session: str, result: PageCheck, settle: float) -> None:
        # events already queued plus any that arrive within `settle` seconds
        end = time.monotonic() + settle
        while True:
            try:
                event = self._events.get(timeout=max(0.0, end - time.monotonic()))
            except queue.Empty:
                return
            self._record(event, session, result)

    @staticmethod
    def _record(event: dict, session: str, result: PageCheck) -> str | None:
        if event.get("sessionId") != session:
            return None
        method, p = event["method"], event.get("params", {})
        if method == "Runtime.exceptionThrown":
            d = p["exceptionDetails"]
            result.errors.append(f"exception: {d.get('exception', {}).get('description') or d.get('text')}")
        elif method == "Runtime.consoleAPICalled" and p["type"] in ("error", "assert"):
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", []))
            result.errors.append(f"console.{p['type']}: {text}")
        elif method == "Log.entryAdded" and p["entry"]["level"] == "error":
            e = p["entry"]
            result.errors.append(f"{e['source']}: {e['text']} {e.get('url', '')}".strip())
        elif method == "Network.requestWillBeSent":
            result.requests.append(p["request"]["url"])
        elif method == "Network.loadingFailed" and not p.get("canceled"):
            result.errors.append(f"network: {p.get('errorText')} ({p.get('type')})")
        return method

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=5)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        os.close(self._to_browser)
        self._reader.join(timeout=5)
        os.close(self._from_browser)


def find_chromium() -> str | None:
    explicit = os.environ.get("LORATWIN_CHROMIUM")
    if explicit:
        return explicit
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


@pytest.fixture(scope="session")
def chromium(tmp_path_factory):
    binary = find_chromium()
    if binary is None:
        pytest.skip("headless Chromium not installed (Debian: apt-get install -y chromium)")
    browser = Chromium(binary, tmp_path_factory.mktemp("chromium-profile"))
    try:
        browser.send("Browser.getVersion", timeout=30)
    except (RuntimeError, TimeoutError, OSError) as exc:
        # installed but broken is a failure, not a skip: CI would otherwise pass without checking
        browser.close()
        pytest.fail(f"{binary} does not start headless: {exc!r}")
    yield browser
    browser.close()
